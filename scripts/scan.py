"""Third-party scanners over the deployment and the code: `make scan`.

- checkov over every rendered overlay (`kubectl kustomize k8s/overlays/<name>`) and the Dockerfiles;
- hadolint over the Dockerfiles;
- bandit over the Python that runs in the service (handlers, bot, serving, restoration, docker, k8s);
- mypy over handlers, bot and serving (its settings are in pyproject.toml).

The scanners live in their own environment (.venv-scan, from requirements-scan.txt): checkov pins
versions of packaging, networkx and python-dateutil that would replace the service's own.
A finding passes only when docs/deploy.md lists it, with its reason, under "Accepted scanner
findings"; anything else fails, and so does a listed finding no scanner reports any more (the
list stays true). mypy findings are never accepted here: fix them, or state in pyproject.toml
why a module's code is right.

    python scripts/scan.py            # all four; exit 1 on anything not accepted
    python scripts/scan.py checkov    # one of them
"""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / ".venv-scan" / "bin"
PYTHON = ROOT / ".venv" / "bin" / "python"
OUT = ROOT / "build" / "scan"
DOCKERFILES = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docker").glob("Dockerfile.*")
                     if not p.name.endswith(".dockerignore"))
OVERLAYS = sorted(p.name for p in (ROOT / "k8s" / "overlays").iterdir() if (p / "kustomization.yaml").exists())
BANDIT_PATHS = ["handlers", "bot", "serving", "restoration", "docker", "k8s"]


@dataclass(frozen=True)
class Finding:
    scanner: str
    check: str
    where: str  # Kind/name for a Kubernetes object, else a path relative to the repository
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.scanner} {self.check} {self.where}: {self.detail}"


@dataclass(frozen=True)
class Accepted:
    scanner: str
    checks: tuple[str, ...]
    places: tuple[str, ...]
    reason: str

    def covers(self, f: Finding) -> bool:
        return (f.scanner == self.scanner and f.check in self.checks
                and any(fnmatch.fnmatchcase(f.where, p) for p in self.places))


def accepted_findings(doc: Path = ROOT / "docs" / "deploy.md") -> list[Accepted]:
    """Rows ``| scanner | CHECK[, CHECK] | `place`, `place` | reason |`` of the accepted-findings table."""
    text = doc.read_text(encoding="utf-8")
    section = text.split("### Accepted scanner findings", 1)[1].split("\n#", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or cells[0] in ("scanner", "---") or not line.startswith("|"):
            continue
        scanner, checks, places, reason = cells
        rows.append(Accepted(scanner, tuple(c.strip() for c in checks.split(",")),
                             tuple(re.findall(r"`([^`]+)`", places)), reason))
    return rows


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900, **kwargs)


def tool(name: str) -> str:
    path = TOOLS / name
    if not path.exists():
        sys.exit(f"scan: {path.relative_to(ROOT)} is missing; run `make scan` (it installs requirements-scan.txt)")
    return str(path)


def checkov() -> list[Finding]:
    OUT.mkdir(parents=True, exist_ok=True)
    rendered = []
    for overlay in OVERLAYS:
        out = run(["kubectl", "kustomize", f"k8s/overlays/{overlay}"])
        if out.returncode:
            sys.exit(f"scan: kubectl kustomize k8s/overlays/{overlay} failed:\n{out.stderr}")
        path = OUT / f"{overlay}.yaml"
        path.write_text(out.stdout)
        rendered.append(str(path))
    findings = []
    for framework, files in (("kubernetes", rendered), ("dockerfile", DOCKERFILES)):
        args = [tool("checkov"), "--quiet", "--compact", "--skip-download", "-o", "json", "--framework", framework]
        for f in files:
            args += ["-f", f]
        out = run(args)
        if not out.stdout.strip():
            sys.exit(f"scan: checkov ({framework}) gave no report:\n{out.stderr[-2000:]}")
        reports = json.loads(out.stdout)
        for report in reports if isinstance(reports, list) else [reports]:
            for failed in report.get("results", {}).get("failed_checks", []):
                if framework == "kubernetes":
                    kind, _, name = failed["resource"].split(".", 2)  # Kind.namespace.name
                    where = f"{kind}/{name}"
                else:
                    where = str(Path(failed["file_abs_path"]).resolve().relative_to(ROOT))
                overlay = Path(failed["file_path"]).stem
                findings.append(Finding("checkov", failed["check_id"], where,
                                        f"{failed['check_name']} ({overlay})"))
    return findings


def hadolint() -> list[Finding]:
    out = run([tool("hadolint"), "-f", "json", *DOCKERFILES])
    return [Finding("hadolint", r["code"], r["file"], f"line {r['line']}: {r['message']}")
            for r in json.loads(out.stdout or "[]")]


def bandit() -> list[Finding]:
    out = run([tool("bandit"), "-q", "-r", "-f", "json", *BANDIT_PATHS])
    return [Finding("bandit", r["test_id"], r["filename"], f"line {r['line_number']}: {r['issue_text']}")
            for r in json.loads(out.stdout)["results"]]


def mypy() -> list[Finding]:
    out = run([tool("mypy"), "--python-executable", str(PYTHON)])
    findings = []
    for line in out.stdout.splitlines():
        m = re.match(r"^(\S+?):(\d+): error: (.*?)(?:  \[([\w-]+)\])?$", line)
        if m:
            findings.append(Finding("mypy", m.group(4) or "error", m.group(1), f"line {m.group(2)}: {m.group(3)}"))
    if out.returncode and not findings:
        findings.append(Finding("mypy", "crash", "-", out.stdout[-500:] + out.stderr[-500:]))
    return findings


SCANNERS = {"checkov": checkov, "hadolint": hadolint, "bandit": bandit, "mypy": mypy}


def main(argv: list[str]) -> int:
    chosen = argv or list(SCANNERS)
    accepted = [a for a in accepted_findings() if a.scanner in chosen]
    used: set[Accepted] = set()
    failed = 0
    for name in chosen:
        findings = SCANNERS[name]()
        new = []
        for f in findings:
            rule = next((a for a in accepted if a.covers(f)), None)
            if rule is None:
                new.append(f)
            else:
                used.add(rule)
        print(f"{name}: {len(findings)} finding(s), {len(findings) - len(new)} accepted in docs/deploy.md, "
              f"{len(new)} not")
        for f in new:
            print(f"  NOT ACCEPTED  {f}")
        failed += len(new)
    for rule in accepted:
        if rule not in used:
            print(f"  STALE  docs/deploy.md accepts {rule.scanner} {', '.join(rule.checks)} for "
                  f"{', '.join(rule.places)}, which no scan reports: drop the row")
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
