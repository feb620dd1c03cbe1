"""The Dockerfiles, checked statically (no Docker here): bases pinned, COPY sources present,
versions from requirements.txt, non-root users, and a build context that carries what they copy."""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
DOCKERFILES = ("Dockerfile.serve", "Dockerfile.serve-cpu", "Dockerfile.bot")
# The nginx front's image: Debian packages only, no pip (the generic checks apply to it too).
ALL_DOCKERFILES = (*DOCKERFILES, "Dockerfile.proxy")
# What the build script produces before `docker build` (python -m serving.archive).
BUILT = {"model_store/"}


def instructions(name: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", (DOCKER / name).read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def pins() -> dict[str, str]:
    found = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s#]+)", line.strip())
        if m:
            found[m.group(1).lower()] = m.group(2)
    return found


def copy_sources(name: str) -> list[str]:
    sources = []
    for word, args in instructions(name):
        if word == "COPY":
            parts = [p for p in args.split() if not p.startswith("--")]
            sources += parts[:-1]
    return sources


@pytest.mark.parametrize("name", ALL_DOCKERFILES)
def test_base_images_are_pinned(name):
    bases = [args.split()[0] for word, args in instructions(name) if word == "FROM"]
    assert bases
    for base in bases:
        repo, _, tag = base.partition(":")
        assert tag and tag != "latest" and "$" not in base, base


def test_serving_bases_are_torchserve_of_the_pinned_version():
    version = pins()["torchserve"]
    assert [a for w, a in instructions("Dockerfile.serve") if w == "FROM"] == [f"pytorch/torchserve:{version}-gpu"]
    assert [a for w, a in instructions("Dockerfile.serve-cpu") if w == "FROM"] == [f"pytorch/torchserve:{version}-cpu"]


def test_bot_base_matches_the_project_python():
    base = next(a for w, a in instructions("Dockerfile.bot") if w == "FROM")
    m = re.match(r"python:(\d+)\.(\d+)\.\d+-slim", base)
    assert m, base
    assert (int(m.group(1)), int(m.group(2))) == sys.version_info[:2]


@pytest.mark.parametrize("name", DOCKERFILES)
def test_pip_installs_use_the_project_pins(name):
    pinned = pins()
    installs = [a for w, a in instructions(name) if w == "RUN" and "pip install" in a]
    assert installs
    for cmd in installs:
        # requirements.txt is a constraints file: every package gets exactly the pinned version
        assert "-c /tmp/requirements.txt" in cmd
        pip_part = cmd.split("pip install", 1)[1].split("&&")[0]
        words = [w for w in pip_part.split() if not w.startswith("-") and not w.startswith(("http", '"', "/tmp"))]
        assert words
        for package in words:
            assert "==" not in package and package.lower() in pinned, f"{package} is not pinned in requirements.txt"
    assert ("COPY", "requirements.txt /tmp/requirements.txt") in instructions(name)


def included(rel: str, pattern: str) -> bool:
    """Docker's matching, as far as these files need it: a pattern names a file or a whole folder."""
    pattern = pattern.rstrip("/")
    return fnmatch.fnmatch(rel, pattern) or rel.startswith(pattern + "/")


@pytest.mark.parametrize("name", ALL_DOCKERFILES)
def test_copy_sources_exist_and_are_in_the_build_context(name):
    ignore = [line.strip() for line in (DOCKER / f"{name}.dockerignore").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    assert ignore[0] == "*"  # everything else stays out of the context (.venv, data, runs)
    allowed = [p[1:] for p in ignore if p.startswith("!")]
    for src in copy_sources(name):
        if src in BUILT:
            assert (ROOT / src).is_dir()
            assert any(a.startswith(src) for a in allowed), f"{src} excluded by {name}.dockerignore"
            continue
        path = ROOT / src
        assert path.exists(), f"{name}: COPY source {src} does not exist"
        files = [path] if path.is_file() else [p for p in path.rglob("*.py") if "__pycache__" not in p.parts]
        for f in files:
            rel = f.relative_to(ROOT).as_posix()
            assert any(included(rel, a) for a in allowed), f"{rel} is excluded from the build context by {name}.dockerignore"


def test_archive_names_match_what_the_config_loads():
    from restoration.names import MODELS, WORKFLOW_RESTORE
    from serving.server import read_properties

    props = read_properties(ROOT / "k8s" / "base" / "torchserve" / "config.properties")
    assert props["load_models"].split(",") == [f"{m}.mar" for m in MODELS]
    assert "!model_store/*.war" in (DOCKER / "Dockerfile.serve.dockerignore").read_text()
    assert f"{WORKFLOW_RESTORE}.war" not in props["load_models"]  # registered by the sidecar instead


# The pod that runs each image, whose runAsUser the image's numeric USER must be.
POD_OF = {"Dockerfile.serve": "torchserve/deployment.yaml", "Dockerfile.serve-cpu": "torchserve/deployment.yaml",
          "Dockerfile.bot": "bot/deployment.yaml", "Dockerfile.proxy": "torchserve/deployment.yaml"}


@pytest.mark.parametrize("name", ALL_DOCKERFILES)
def test_images_run_as_a_numeric_non_root_user_the_pods_agree_with(name):
    """A numeric USER: the kubelet can check runAsNonRoot without the image's /etc/passwd."""
    import yaml

    users = [a for w, a in instructions(name) if w == "USER"]
    assert users, name
    m = re.fullmatch(r"(\d+)(?::(\d+))?", users[-1])
    assert m and int(m.group(1)) > 0, f"{name}: USER {users[-1]} is not a numeric non-root uid"
    pod = yaml.safe_load((ROOT / "k8s" / "base" / POD_OF[name]).read_text())["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == int(m.group(1))
    if m.group(2):
        assert pod["securityContext"]["runAsGroup"] == int(m.group(2))
    entry = [a for w, a in instructions(name) if w == "ENTRYPOINT"]
    assert entry and entry[-1].startswith("[")


@pytest.mark.parametrize("name", ("Dockerfile.serve", "Dockerfile.serve-cpu"))
def test_sidecar_runs_from_the_image_layout_with_defaults_from_the_shared_names(name, tmp_path):
    """The files the image copies into the sidecar's folder are all it needs; its defaults (models,
    workflow, ports) are restoration/names.py's, not strings of its own."""
    bin_dir = "/home/model-server/bin/"
    for word, args in instructions(name):
        parts = [p for p in args.split() if not p.startswith("--")] if word == "COPY" else []
        if parts and parts[-1].startswith(bin_dir):
            src, dest = ROOT / parts[0], tmp_path / parts[-1][len(bin_dir):]
            if src.is_dir():
                shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(src, dest)
    probe = ("import sys; sys.argv = ['ts_sidecar.py']; sys.path.insert(0, '.'); import ts_sidecar as s; "
             "c = s.SidecarConfig.from_env({}); print(c.models, c.workflow, c.inference_url, c.management_url); "
             "print(s.__file__, s.names.__file__)")
    out = subprocess.run([sys.executable, "-E", "-s", "-c", probe], cwd=tmp_path, capture_output=True, text=True,
                         timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    from restoration import names

    expected = (f"{names.MODELS} {names.WORKFLOW_RESTORE} http://127.0.0.1:{names.TORCHSERVE_INFERENCE_PORT} "
                f"http://127.0.0.1:{names.MANAGEMENT_PORT}")
    assert out.stdout.splitlines()[0] == expected
    assert all(str(tmp_path) in path for path in out.stdout.splitlines()[1].split())  # nothing from the repository
    usage = subprocess.run([sys.executable, "-E", "-s", str(tmp_path / "ts_sidecar.py")], capture_output=True,
                           text=True, timeout=60, cwd="/", env={"PATH": "/usr/bin:/bin"})
    assert usage.returncode == 2 and "ts_sidecar.py ready" in usage.stderr


def test_bot_image_copies_the_packages_the_bot_imports():
    copied = copy_sources("Dockerfile.bot")
    imported = set()
    for f in (ROOT / "bot").rglob("*.py"):
        imported |= set(re.findall(r"^\s*(?:from|import) (\w+)", f.read_text(), re.M))
    project = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}
    assert "restoration" in imported  # the shared core
    assert "handlers" not in imported and "training" not in imported  # no TorchServe or training code
    for package in imported & project:
        assert package in copied or f"{package}/" in copied, f"the bot imports {package}; Dockerfile.bot does not copy it"


def test_build_script_is_valid_bash_and_refuses_latest(tmp_path):
    script = DOCKER / "build-images.sh"
    assert subprocess.run(["bash", "-n", str(script)], timeout=30).returncode == 0
    text = script.read_text()
    for name in ALL_DOCKERFILES:
        assert f"docker/{name}" in text
    assert "python -m serving.archive" in text.replace('"$PY" -m', "python -m")
    if shutil.which("docker") is None:
        # without Docker the script stops with a clear message instead of half-building
        fake = tmp_path / "bin"
        fake.mkdir()
        out = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=30,
                             env={"PATH": f"{fake}:/usr/bin:/bin", "DOCKER": "docker-that-does-not-exist"})
        assert out.returncode == 1 and "not found" in out.stderr
