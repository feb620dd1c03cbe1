"""The dependency audit: its verdicts on pip-audit reports, the accepted-findings file, and a real
run over the pinned environment where the vulnerability database can be reached."""

from __future__ import annotations

import datetime as dt
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "audit_dependencies.py"
spec = importlib.util.spec_from_file_location("audit_dependencies", SCRIPT)
audit = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = audit  # dataclasses look their module up here
spec.loader.exec_module(audit)

REPORT = {"dependencies": [
    {"name": "pillow", "version": "9.0.0", "vulns": [
        {"id": "PYSEC-2022-1", "aliases": ["CVE-2022-0001"], "fix_versions": ["9.0.1"]}]},
    {"name": "torchserve", "version": "0.12.0", "vulns": [
        {"id": "GHSA-aaaa-bbbb-cccc", "aliases": ["CVE-2099-1"], "fix_versions": []}]},
    {"name": "numpy", "version": "2.4.6", "vulns": []},
    {"name": "torch", "skip_reason": "Dependency not found on PyPI"},
]}
ACCEPT_TORCHSERVE = {"id": "CVE-2099-1", "package": "torchserve", "reason": "management API not exposed",
                     "review_by": "2099-01-01"}


def test_unaccepted_findings_fail_and_accepted_ones_are_reported():
    result = audit.classify(REPORT, [ACCEPT_TORCHSERVE], today=dt.date(2030, 1, 1))
    assert (result.audited, result.skipped, len(result.findings)) == (3, 1, 2)
    assert [f.id for f in result.unaccepted] == ["PYSEC-2022-1"]
    assert [(f.package, e["id"]) for f, e in result.accepted] == [("torchserve", "CVE-2099-1")]
    assert result.overdue == []


def test_an_acceptance_past_its_review_date_is_flagged():
    result = audit.classify(REPORT, [ACCEPT_TORCHSERVE], today=dt.date(2099, 1, 2))
    assert result.overdue == [ACCEPT_TORCHSERVE]


def test_an_acceptance_for_another_package_does_not_hide_a_finding():
    other = {**ACCEPT_TORCHSERVE, "package": "pillow"}
    result = audit.classify(REPORT, [other], today=dt.date(2030, 1, 1))
    assert {f.package for f in result.unaccepted} == {"pillow", "torchserve"}


def test_a_report_where_everything_was_skipped_audits_nothing():
    result = audit.classify({"dependencies": [{"name": "torch", "skip_reason": "not found"}]}, [])
    assert result.audited == 0 and result.findings == []


def test_accepted_file_is_well_formed_and_names_installed_packages():
    from importlib.metadata import PackageNotFoundError, version

    for entry in audit.load_accepted():
        try:
            version(entry["package"])
        except PackageNotFoundError:
            pytest.fail(f"accepted finding for {entry['package']}, which is not installed")
        dt.date.fromisoformat(str(entry["review_by"]))


@pytest.mark.timeout(1200)
def test_pinned_dependencies_have_no_unaccepted_vulnerabilities():
    out = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=1100, cwd=ROOT)
    if out.returncode == audit.EXIT_UNAUDITABLE:
        pytest.skip(f"dependency audit not possible from this machine: {out.stdout.strip()[-300:]}")
    assert out.returncode == audit.EXIT_OK, out.stdout + out.stderr
