"""Each archive is complete: its handler imports and serves from a directory holding only the
archive's contents (so a module missing from an archive fails here, not in a cluster)."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest

from restoration.names import MODELS
from tests.conftest import encode, photo

PROBE = r"""
import importlib, io, sys
from pathlib import Path
here = Path.cwd().resolve()
mod = importlib.import_module(sys.argv[1])
for name in ("handlers", "restoration"):
    m = sys.modules[name]
    assert Path(m.__file__).resolve().is_relative_to(here), f"{name} imported from outside the archive: {m.__file__}"
assert "training" not in sys.modules, "a handler pulled in the training code"
cls = next(v for k, v in vars(mod).items() if k.endswith("Handler") and v.__module__ == mod.__name__)

class Context:
    system_properties = {"model_dir": str(here), "gpu_id": None}
    model_name = sys.argv[1]
    metrics = None
    def __init__(self):
        self.status = {}
    def get_request_header(self, i, key):
        return None
    def set_response_status(self, code, phrase, i):
        self.status[i] = code
    def set_response_content_type(self, i, value):
        pass

h = cls()
ctx = Context()
h.initialize(ctx)
out = h.handle([{"body": Path(sys.argv[2]).read_bytes()}], ctx)
assert not ctx.status, ctx.status
from PIL import Image
print(Image.open(io.BytesIO(out[0])).size)
"""


@pytest.mark.parametrize("name", MODELS)
def test_handler_runs_from_the_archive_alone(model_store, tmp_path, name):
    mar = model_store / f"{name}.mar"
    if not mar.exists():
        pytest.skip(f"{name}.mar is not built by the test store")
    root = tmp_path / name
    with zipfile.ZipFile(mar) as z:
        z.extractall(root)
    handler = {"repair": "repair", "colorize": "colorize", "sr_x2": "super_resolution", "sr_x4": "super_resolution"}[name]
    img = tmp_path / "in.png"
    img.write_bytes(encode(photo(40, 30), "PNG"))
    # -I: isolated mode (no PYTHONPATH, no user site); the archive directory is the only project code.
    cmd = [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, '.'); exec({PROBE!r})", handler, str(img)]
    r = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    scale = {"repair": 1, "colorize": 1, "sr_x2": 2, "sr_x4": 4}[name]
    assert r.stdout.strip() == str((40 * scale, 30 * scale))
