"""`make scan`'s bookkeeping (scripts/scan.py), without the scanners: the accepted findings in
docs/deploy.md parse, name places that exist, and accept only what they list."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("scan", ROOT / "scripts" / "scan.py")
scan = importlib.util.module_from_spec(spec)
sys.modules["scan"] = scan
spec.loader.exec_module(scan)


def test_accepted_findings_parse_and_name_real_places():
    rows = scan.accepted_findings()
    assert {r.scanner for r in rows} <= set(scan.SCANNERS) - {"mypy"}  # mypy findings are never accepted
    for row in rows:
        assert row.checks and row.places and len(row.reason) > 30, row
        for place in row.places:
            if "/" in place and place.split("/")[0][:1].isupper():  # Kind/name of a Kubernetes object
                continue
            assert list(ROOT.glob(place)), f"docs/deploy.md accepts {row.checks} for {place}, which does not exist"


def test_a_finding_passes_only_where_and_as_listed():
    row = scan.Accepted("bandit", ("B404", "B603"), ("serving/*.py",), "reason")
    assert row.covers(scan.Finding("bandit", "B603", "serving/run.py"))
    assert not row.covers(scan.Finding("bandit", "B603", "bot/app.py"))
    assert not row.covers(scan.Finding("bandit", "B105", "serving/run.py"))
    assert not row.covers(scan.Finding("checkov", "B603", "serving/run.py"))


@pytest.mark.skipif(not (ROOT / ".venv-scan" / "bin" / "hadolint").exists() or shutil.which("kubectl") is None,
                    reason="the scanners' environment (make scan) is not installed")
def test_hadolint_scan_passes_with_the_accepted_findings():
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "scan.py"), "hadolint"], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
