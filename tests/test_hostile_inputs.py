"""Hostile input against the real TorchServe: every endpoint answers clearly, no worker dies,
worker memory stays bounded."""

from __future__ import annotations

import io
import json

import pytest
import requests
from PIL import Image, ImageOps

from restoration.names import MODELS
from tests.hostile import corpus

pytestmark = pytest.mark.integration

ENDPOINTS = ["/predictions/repair", "/predictions/colorize", "/predictions/sr_x2", "/predictions/sr_x4",
             "/wfpredict/restore"]
SCALE = {"/predictions/repair": 1, "/predictions/colorize": 1, "/predictions/sr_x2": 2, "/predictions/sr_x4": 4, "/wfpredict/restore": 2}
# Peak resident memory any one worker may reach while this corpus passes through it.
WORKER_PEAK_RSS_LIMIT = 1.5 * 2**30


def judge(endpoint: str, r: requests.Response, case) -> str:
    """'image', 'error' (4xx with the JSON body) or a description of what went wrong."""
    content = r.content
    if content.startswith(b"\x89PNG"):
        img = Image.open(io.BytesIO(content))
        src = ImageOps.exif_transpose(Image.open(io.BytesIO(case.data)))  # the service returns it upright
        w, h = src.size
        if img.size != (w * SCALE[endpoint], h * SCALE[endpoint]):
            return f"wrong size {img.size} for {src.size}"
        return "image" if r.status_code == 200 else f"image with status {r.status_code}"
    try:
        body = json.loads(content)
    except ValueError:
        return f"status {r.status_code}, not JSON: {content[:80]!r}"
    code = body.get("code", r.status_code)
    status = code if endpoint.startswith("/wfpredict") else r.status_code
    if 400 <= status < 500 and body.get("message") and body.get("type"):
        return "error"
    return f"status {r.status_code}, body {body}"


@pytest.fixture(scope="module")
def cases():
    return corpus()


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_corpus_on_endpoint(torchserve, cases, endpoint):
    models = list(MODELS)
    before = {m: torchserve.worker_pids(m) for m in models}
    problems = []
    for case in cases:
        r = requests.post(torchserve.inference_url + endpoint, data=case.data,
                          headers={"Content-Type": case.content_type}, timeout=120)
        verdict = judge(endpoint, r, case)
        if verdict not in ("image", "error") or (case.expect != "any" and verdict != case.expect):
            problems.append(f"{case.name}: expected {case.expect}, got {verdict}")
    assert not problems, "\n".join(problems)
    after = {m: torchserve.worker_pids(m) for m in models}
    assert after == before, "a worker restarted"
    for m in models:
        peak = torchserve.workers_peak_rss_mib(m) * 2**20
        assert peak < WORKER_PEAK_RSS_LIMIT, f"{m} worker peak RSS {peak / 2**20:.0f} MiB"


def test_multipart_with_misleading_headers(torchserve, cases):
    html = b"<html><body>not a picture</body></html>"
    url = torchserve.inference_url + "/predictions/sr_x2"
    r = requests.post(url, files={"data": ("photo.png", html, "image/png")}, timeout=60)
    assert r.status_code == 415 and r.json()["type"] == "UnsupportedMediaType"
    good = next(c for c in cases if c.name == "bmp").data
    r = requests.post(url, files={"data": ("notes.txt", good, "text/plain")}, timeout=60)
    assert r.status_code == 200 and r.content.startswith(b"\x89PNG")
    r = requests.post(url, files={"data": ("x.jpg", b"", "image/jpeg")}, timeout=60)
    assert r.status_code == 400
