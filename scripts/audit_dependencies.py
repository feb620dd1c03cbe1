"""Audit the installed, pinned dependencies for known vulnerabilities with pip-audit.

    python scripts/audit_dependencies.py [--json report.json]

Exit codes: 0 no unaccepted finding; 1 unaccepted findings (listed); 3 the audit could not run
(no route to the vulnerability database, or every package was skipped), which CI should report
rather than count as a pass. Accepted findings live in scripts/accepted_vulnerabilities.yaml,
each with a reason and a review date.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
ACCEPTED = ROOT / "scripts" / "accepted_vulnerabilities.yaml"
# pip-audit's default source: PyPI's JSON API, which lists known vulnerabilities per release.
PROBE_URL = "https://pypi.org/pypi/{name}/{version}/json"
EXIT_OK, EXIT_FINDINGS, EXIT_UNAUDITABLE = 0, 1, 3


@dataclass(frozen=True)
class Finding:
    package: str
    version: str
    id: str
    aliases: tuple[str, ...]
    fix_versions: tuple[str, ...]

    def names(self) -> set[str]:
        return {self.id, *self.aliases}


@dataclass
class AuditResult:
    audited: int
    skipped: int
    findings: list[Finding]
    accepted: list[tuple[Finding, dict]]
    unaccepted: list[Finding]
    overdue: list[dict]


def load_accepted(path: Path = ACCEPTED) -> list[dict]:
    """The accepted findings; each must name an id, a package, a reason and a review date."""
    entries = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("accepted") or []
    for entry in entries:
        missing = {"id", "package", "reason", "review_by"} - set(entry)
        if missing:
            raise ValueError(f"{path.name}: entry {entry} lacks {sorted(missing)}")
    return entries


def classify(report: dict, accepted: list[dict], today: dt.date | None = None) -> AuditResult:
    """Split pip-audit's JSON report into accepted and unaccepted findings."""
    today = today or dt.date.today()
    deps = report.get("dependencies", [])
    findings = [
        Finding(d["name"], d.get("version", "?"), v["id"], tuple(v.get("aliases", [])), tuple(v.get("fix_versions", [])))
        for d in deps for v in d.get("vulns", [])
    ]
    by_id = {(e["package"].lower(), e["id"]): e for e in accepted}
    ok, bad = [], []
    for f in findings:
        entry = next((by_id[(f.package.lower(), n)] for n in f.names() if (f.package.lower(), n) in by_id), None)
        (ok.append((f, entry)) if entry else bad.append(f))
    overdue = [e for e in accepted if dt.date.fromisoformat(str(e["review_by"])) < today]
    skipped = sum(1 for d in deps if "skip_reason" in d)
    return AuditResult(len(deps) - skipped, skipped, findings, ok, bad, overdue)


def probe(timeout: float = 10.0) -> str | None:
    """None when PyPI's vulnerability data answers; otherwise why not (checked with a pinned package)."""
    pins = dict(line.split("==", 1) for line in (ROOT / "requirements.txt").read_text().split()
                if "==" in line and not line.startswith("#"))
    url = PROBE_URL.format(name="requests", version=pins.get("requests", "2.32.3"))
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            json.load(reply)["vulnerabilities"]  # noqa: B018 (the field pip-audit reads)
    except urllib.error.HTTPError as err:
        return f"{url} answered {err.code} (a registry mirror without PyPI's JSON API?)"
    except (urllib.error.URLError, OSError, ValueError, KeyError) as err:
        return f"{url} unreachable: {err}"
    return None


def run_pip_audit(timeout: float = 900) -> dict:
    """pip-audit over this interpreter's environment (the pinned dependencies and what they pull in)."""
    cmd = [sys.executable, "-m", "pip_audit", "--local", "--progress-spinner", "off", "--format", "json"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if out.returncode not in (0, 1) or not out.stdout.strip():
        raise RuntimeError(f"pip-audit failed ({out.returncode}): {out.stderr[-2000:]}")
    return json.loads(out.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, help="also write pip-audit's report here")
    args = parser.parse_args(argv)

    accepted = load_accepted()
    reason = probe()
    if reason:
        print(f"audit: cannot reach the vulnerability database: {reason}")
        return EXIT_UNAUDITABLE
    try:
        report = run_pip_audit()
    except (RuntimeError, subprocess.TimeoutExpired, ValueError) as err:
        print(f"audit: {err}")
        return EXIT_UNAUDITABLE
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    result = classify(report, accepted)
    print(f"audit: {result.audited} packages audited, {result.skipped} skipped, {len(result.findings)} findings")
    if result.audited == 0:
        print("audit: every package was skipped; nothing was audited")
        return EXIT_UNAUDITABLE
    for f, entry in result.accepted:
        print(f"  accepted {f.package} {f.version} {f.id}: {entry['reason']} (review by {entry['review_by']})")
    for entry in result.overdue:
        print(f"  REVIEW OVERDUE: {entry['package']} {entry['id']} (review by {entry['review_by']})")
    for f in result.unaccepted:
        fix = ", ".join(f.fix_versions) or "no fixed release"
        print(f"  FINDING {f.package} {f.version} {f.id} {' '.join(f.aliases)}: fixed in {fix}")
    return EXIT_FINDINGS if result.unaccepted or result.overdue else EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
