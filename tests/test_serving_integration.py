"""The real TorchServe: every endpoint, served pixels vs in-process inference, bad input, metrics."""

from __future__ import annotations

import io
import json
import os
import struct
import time
import zlib

import numpy as np
import pytest
import requests
from PIL import Image

from restoration.colorizer import colorize_images, load_generator
from restoration.image_io import encode_image
from restoration.names import MODELS
from restoration.repair import load_repairer, repair_image
from restoration.upscaler import load_sr_model, upscale_image
from tests.conftest import encode, photo

pytestmark = pytest.mark.integration

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def post(ts, path: str, data: bytes, content_type: str = "image/png", **headers) -> requests.Response:
    return requests.post(ts.inference_url + path, data=data, headers={"Content-Type": content_type, **headers},
                         timeout=120)


def as_array(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)


def header_only_png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return PNG_MAGIC + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def local_models(tiny_weights):
    g, cfg = load_generator(str(tiny_weights["colorize"]))
    sr2, _ = load_sr_model(str(tiny_weights["sr_x2"]))
    sr4, _ = load_sr_model(str(tiny_weights["sr_x4"]))
    return {"repair": load_repairer(str(tiny_weights["repair"])), "colorize": (g, cfg), "sr_x2": sr2, "sr_x4": sr4}


def test_ping_and_models(torchserve):
    assert requests.get(torchserve.inference_url + "/ping", timeout=10).json()["status"] == "Healthy"
    wf = requests.get(torchserve.management_url + "/workflows/restore", timeout=10)
    assert wf.ok, wf.text


def test_colorize_matches_in_process(torchserve, local_models):
    img = photo(200, 130, seed=5).convert("L").convert("RGB")
    r = post(torchserve, "/predictions/colorize", encode(img, "PNG"))
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/png"
    g, cfg = local_models["colorize"]
    expected = np.asarray(colorize_images(g, cfg, [img])[0]).astype(int)
    served = as_array(r.content)
    assert served.shape == expected.shape == (130, 200, 3)
    assert np.abs(served - expected).max() <= 1


@pytest.mark.parametrize("name,scale", [("sr_x2", 2), ("sr_x4", 4)])
def test_sr_matches_in_process(torchserve, local_models, name, scale):
    img = photo(90, 70, seed=6)
    r = post(torchserve, f"/predictions/{name}", encode(img, "JPEG", quality=90), "image/jpeg")
    assert r.status_code == 200 and r.content.startswith(PNG_MAGIC)
    decoded = Image.open(io.BytesIO(encode(img, "JPEG", quality=90))).convert("RGB")
    expected = np.asarray(upscale_image(local_models[name], decoded, scale)).astype(int)
    served = as_array(r.content)
    assert served.shape == (70 * scale, 90 * scale, 3)
    assert np.abs(served - expected).max() <= 1


def test_restore_workflow_equals_repair_colorize_then_x2(torchserve, local_models):
    img = photo(64, 48, seed=7)
    r = post(torchserve, "/wfpredict/restore", encode(img, "PNG"))
    assert r.status_code == 200
    # TorchServe always labels workflow replies application/json; the bytes are the PNG.
    assert r.content.startswith(PNG_MAGIC)
    net, rcfg = local_models["repair"]
    fixed = Image.open(io.BytesIO(encode_image(repair_image(net, rcfg, img), "png"))).convert("RGB")
    g, cfg = local_models["colorize"]
    colour = colorize_images(g, cfg, [fixed])[0]
    colour = Image.open(io.BytesIO(encode_image(colour, "png"))).convert("RGB")
    expected = np.asarray(upscale_image(local_models["sr_x2"], colour, 2)).astype(int)
    served = as_array(r.content)
    assert served.shape == (96, 128, 3)
    assert np.abs(served - expected).max() <= 1


def test_jpeg_on_request(torchserve):
    img = encode(photo(40, 40), "PNG")
    r = post(torchserve, "/predictions/sr_x2", img, Accept="image/jpeg")
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/jpeg" and r.content[:2] == b"\xff\xd8"
    r = requests.post(torchserve.inference_url + "/predictions/sr_x2",
                      files={"data": ("x.png", img, "image/png")}, data={"format": "jpeg"}, timeout=60)
    assert r.status_code == 200 and r.content[:2] == b"\xff\xd8"


BAD_INPUTS = {
    "empty": (b"", 400, "EmptyBody"),
    "text": (b"this is not an image at all", 415, "UnsupportedMediaType"),
    "html": (b"<html><body>hi</body></html>", 415, "UnsupportedMediaType"),
    "truncated": (None, 400, "CorruptImage"),
    "bomb": (header_only_png(20000, 20000), 413, "TooManyPixels"),
    "aspect": (None, 422, "ExtremeAspectRatio"),
}


def _bad_payload(name: str) -> bytes:
    data = BAD_INPUTS[name][0]
    if name == "truncated":
        full = encode(photo(300, 300), "JPEG")
        return full[: len(full) // 2]
    if name == "aspect":
        return encode(Image.new("RGB", (3000, 10)), "PNG")
    return data


@pytest.mark.parametrize("model", ["colorize", "sr_x2", "sr_x4"])
@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_gets_4xx_json(torchserve, model, case):
    _, status, kind = BAD_INPUTS[case]
    r = post(torchserve, f"/predictions/{model}", _bad_payload(case))
    assert r.status_code == status, r.text
    body = r.json()
    assert body["code"] == status and body["type"] == kind
    assert len(body["message"]) > 20  # says what is wrong and what to do


def test_too_many_bytes(torchserve):
    r = post(torchserve, "/predictions/sr_x2", os.urandom(31_000_000))
    assert r.status_code == 413 and r.json()["type"] == "TooManyBytes"


def test_x4_output_limit_refused_before_compute(torchserve):
    # 2100×2100 ×4 = 70.6 MP out > 64 MP default limit; the header alone decides.
    r = post(torchserve, "/predictions/sr_x4", header_only_png(2100, 2100))
    assert r.status_code == 413
    assert r.json()["type"] == "OutputTooLarge" and "64.0 MP" in r.json()["message"]


def test_workflow_bad_input_is_not_retried_and_says_why(torchserve):
    r = post(torchserve, "/wfpredict/restore", b"definitely not an image")
    # TorchServe drops node status codes: the workflow answers 200 with the JSON error whose
    # `code` is the real status (documented in the README).
    body = json.loads(r.content)
    assert body["code"] == 415 and body["type"] == "UnsupportedMediaType"
    assert r.elapsed.total_seconds() < 10


def test_workers_survive_bad_input(torchserve):
    before = {m: torchserve.worker_pids(m) for m in ("colorize", "sr_x2")}
    for case in BAD_INPUTS:
        post(torchserve, "/predictions/colorize", _bad_payload(case))
    r = post(torchserve, "/predictions/colorize", encode(photo(30, 30), "PNG"))
    assert r.status_code == 200
    assert {m: torchserve.worker_pids(m) for m in ("colorize", "sr_x2")} == before


def test_metrics_exposed(torchserve):
    post(torchserve, "/predictions/colorize", encode(photo(30, 30), "PNG"))
    post(torchserve, "/predictions/colorize", b"nope")
    text = requests.get(torchserve.metrics_url + "/metrics", timeout=10).text
    assert 'ts_inference_requests_total{model_name="colorize"' in text
    assert 'DecodeSeconds_count{ModelName="colorize"' in text
    assert 'InferenceSeconds_count{ModelName="colorize"' in text
    assert 'InputMegapixels_count{ModelName="colorize"' in text
    assert 'Rejections{ModelName="colorize",Level="Model",Reason="UnsupportedMediaType"' in text


def test_per_model_settings_from_config_properties(torchserve):
    import json as _json

    from serving.server import ROOT, read_properties

    wanted = _json.loads(read_properties(ROOT / "config.properties")["models"])
    for name, versions in wanted.items():
        info = requests.get(f"{torchserve.management_url}/models/{name}", timeout=10).json()[0]
        assert info["batchSize"] == versions["1.0"]["batchSize"]
        assert info["maxBatchDelay"] == versions["1.0"]["maxBatchDelay"]


def test_colorize_batch_of_concurrent_requests(torchserve, local_models):
    """Concurrent requests may be batched together (batchSize 4): each still gets its own image."""
    from concurrent.futures import ThreadPoolExecutor

    imgs = [photo(40 + 10 * i, 30 + 5 * i, seed=20 + i) for i in range(6)]
    with ThreadPoolExecutor(6) as pool:
        replies = list(pool.map(lambda im: post(torchserve, "/predictions/colorize", encode(im, "PNG")), imgs))
    g, cfg = local_models["colorize"]
    for im, r in zip(imgs, replies, strict=True):
        assert r.status_code == 200
        expected = np.asarray(colorize_images(g, cfg, [im])[0]).astype(int)
        assert np.abs(as_array(r.content) - expected).max() <= 1


def test_logs_one_access_line_per_request_and_no_per_request_noise(torchserve):
    """serving/log4j2.xml: each request is in the access log once; the frontend's own log gets
    no per-request lines (TorchServe's default writes about a dozen per request), and the
    handler's messages (a refusal here) still reach the model log."""
    marker = f"/predictions/colorize?probe={time.time_ns()}"
    ok = requests.post(torchserve.inference_url + marker, data=encode(photo(30, 30), "PNG"),
                       headers={"Content-Type": "image/png"}, timeout=120)
    assert ok.status_code == 200
    assert post(torchserve, "/predictions/colorize", b"nope").status_code == 415
    logs = torchserve.workdir / "logs"
    deadline = time.monotonic() + 10
    while marker not in (logs / "access_log.log").read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert (logs / "access_log.log").read_text().count(marker) == 1
    frontend = torchserve.log_path.read_text(errors="replace")
    for noise in ("Backend response time", "Looping backend response", "Sending response for jobId",
                  "result=[METRICS]", "Backend received inference at"):
        assert noise not in frontend
    assert "Backend received inference at" not in (logs / "model_log.log").read_text()
    assert "request 0 refused: 415 UnsupportedMediaType" in (logs / "model_log.log").read_text()


@pytest.mark.parametrize("task,path", [("repair", "/predictions/repair"), ("colorize", "/predictions/colorize"),
                                       ("sr_x2", "/predictions/sr_x2"),
                                       ("sr_x4", "/predictions/sr_x4"), ("restore", "/wfpredict/restore")])
def test_library_gives_the_served_bytes(torchserve, tiny_weights, task, path):
    """python -m restoration / restoration.api and the server: the same image, byte for byte."""
    from restoration.api import Restorer

    body = encode(photo(72, 52, seed=11), "JPEG", quality=85)
    r = post(torchserve, path, body, "image/jpeg")
    assert r.status_code == 200, r.text
    lib = Restorer(dirs={k: v for k, v in tiny_weights.items() if k in MODELS})
    assert lib.process(task, body) == r.content


def test_vividness_header_and_form_field(torchserve, tiny_weights):
    from restoration.api import Restorer

    img = photo(64, 48, seed=12).convert("L").convert("RGB")
    body = encode(img, "PNG")
    faithful = post(torchserve, "/predictions/colorize", body, **{"X-Vividness": "0"})
    vivid = post(torchserve, "/predictions/colorize", body, **{"X-Vividness": "1"})
    default = post(torchserve, "/predictions/colorize", body)
    assert faithful.status_code == vivid.status_code == default.status_code == 200
    assert len({faithful.content, vivid.content, default.content}) == 3
    lib = Restorer(dirs={"colorize": tiny_weights["colorize"]})
    assert lib.process("colorize", body, vividness=1.0) == vivid.content
    form = requests.post(torchserve.inference_url + "/predictions/colorize", files={"data": ("p.png", body)},
                         data={"vividness": "1"}, timeout=60)
    assert form.status_code == 200 and form.content == vivid.content
    for bad in ("2", "-0.1", "very", "nan"):
        r = post(torchserve, "/predictions/colorize", body, **{"X-Vividness": bad})
        assert r.status_code == 400 and r.json()["type"] == "BadVividness", (bad, r.text)


def test_workflow_honours_vividness_strength_and_format(torchserve, tiny_weights):
    """Settings reach every node of the three-node workflow, as headers and as form fields."""
    from restoration.api import Restorer

    body = encode(photo(40, 32, seed=13).convert("L").convert("RGB"), "PNG")
    lib = Restorer(dirs={k: v for k, v in tiny_weights.items() if k in MODELS})
    seen = set()
    for v, s in (("0", "1"), ("1", "1"), ("1", "0")):
        r = post(torchserve, "/wfpredict/restore", body, **{"X-Vividness": v, "X-Repair-Strength": s})
        want = lib.process("restore", body, vividness=float(v), strength=float(s))
        assert r.status_code == 200 and r.content == want, (v, s)
        seen.add(r.content)
    assert len(seen) == 3
    form = requests.post(torchserve.inference_url + "/wfpredict/restore", files={"data": ("p.png", body)},
                         data={"vividness": "1", "strength": "0"}, timeout=60)
    assert form.status_code == 200 and form.content == lib.process("restore", body, vividness=1.0, strength=0.0)
    jpeg = post(torchserve, "/wfpredict/restore", body, Accept="image/jpeg", **{"X-Repair-Strength": "0.5"})
    assert jpeg.status_code == 200 and jpeg.content[:2] == b"\xff\xd8"
    assert jpeg.content == lib.process("restore", body, fmt="jpeg", strength=0.5)
    assert b"pix2pix-sr-settings" not in lib.process("restore", body)


def test_sr_input_picks_the_compressed_variant(torchserve, tiny_weights):
    """X-SR-Input / sr_input: ×2 has a variant for compressed inputs; ×4 falls back to its one model."""
    from restoration.api import Restorer

    body = encode(photo(48, 40, seed=23), "JPEG", quality=70)
    lib = Restorer(dirs={k: v for k, v in tiny_weights.items() if k in MODELS})
    clean = post(torchserve, "/predictions/sr_x2", body, "image/jpeg")
    comp = post(torchserve, "/predictions/sr_x2", body, "image/jpeg", **{"X-SR-Input": "compressed"})
    assert clean.status_code == comp.status_code == 200 and clean.content != comp.content
    assert comp.content == lib.process("sr_x2", body, sr_input="compressed")
    assert clean.content == lib.process("sr_x2", body)
    form = requests.post(torchserve.inference_url + "/predictions/sr_x2", files={"data": ("p.jpg", body)},
                         data={"sr_input": "compressed"}, timeout=60)
    assert form.status_code == 200 and form.content == comp.content
    x4 = post(torchserve, "/predictions/sr_x4", body, "image/jpeg", **{"X-SR-Input": "compressed"})
    assert x4.status_code == 200 and x4.content == post(torchserve, "/predictions/sr_x4", body, "image/jpeg").content
    wf = post(torchserve, "/wfpredict/restore", body, "image/jpeg", **{"X-SR-Input": "compressed"})
    assert wf.status_code == 200 and wf.content == lib.process("restore", body, sr_input="compressed")
    bad = post(torchserve, "/predictions/sr_x2", body, "image/jpeg", **{"X-SR-Input": "blurry"})
    assert bad.status_code == 400 and bad.json()["type"] == "BadSrInput"


def test_repair_strength_and_colour(torchserve, tiny_weights):
    """/predictions/repair: same size out; strength 0 is the input; a colour photo keeps its chroma."""
    from restoration.api import Restorer

    img = photo(70, 50, seed=21)
    body = encode(img, "PNG")
    full = post(torchserve, "/predictions/repair", body)
    off = post(torchserve, "/predictions/repair", body, **{"X-Repair-Strength": "0"})
    assert full.status_code == off.status_code == 200
    assert Image.open(io.BytesIO(full.content)).size == (70, 50)
    assert np.array_equal(as_array(off.content), np.asarray(img).astype(int))
    assert full.content != off.content
    out = as_array(full.content)
    src = np.asarray(img).astype(int)
    # the same change on every channel: differences between channels (the chroma) kept
    unclipped = (out > 0).all(-1) & (out < 255).all(-1)
    assert np.abs((out - src)[..., 0] - (out - src)[..., 1])[unclipped].max() <= 1
    assert np.abs((out - src)[..., 0] - (out - src)[..., 2])[unclipped].max() <= 1
    lib = Restorer(dirs={"repair": tiny_weights["repair"]})
    assert lib.process("repair", body, strength=0.3) == post(torchserve, "/predictions/repair", body,
                                                            **{"X-Repair-Strength": "0.3"}).content
    for bad in ("1.5", "-1", "full", "nan"):
        r = post(torchserve, "/predictions/repair", body, **{"X-Repair-Strength": bad})
        assert r.status_code == 400 and r.json()["type"] == "BadStrength", (bad, r.text)


@pytest.mark.parametrize("fmt,media_type", [("HEIF", "image/heic"), ("AVIF", "image/avif")])
def test_phone_photo_files_come_back_upright(torchserve, local_models, tiny_weights, fmt, media_type):
    """A HEIC and an AVIF as a phone saves them (held upright: EXIF orientation 6), raw body and
    multipart: colourised upright, the same pixels as in-process, the same bytes as the library."""
    import tests.hostile  # noqa: F401 - registers pillow-heif's encoder for Image.save
    from restoration.api import Restorer
    from restoration.image_io import decode_image

    img = photo(90, 60, seed=13).convert("L").convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6
    body = encode(img, fmt, quality=90, exif=exif.tobytes())
    r = post(torchserve, "/predictions/colorize", body, media_type)
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/png", r.text
    decoded = decode_image(body).image
    assert decoded.size == (60, 90)
    g, cfg = local_models["colorize"]
    expected = np.asarray(colorize_images(g, cfg, [decoded])[0]).astype(int)
    served = as_array(r.content)
    assert served.shape == (90, 60, 3) and np.abs(served - expected).max() <= 1
    assert Restorer(dirs={"colorize": tiny_weights["colorize"]}).process("colorize", body) == r.content
    form = requests.post(torchserve.inference_url + "/predictions/colorize",
                         files={"data": (f"IMG_0001.{fmt.lower()}", body, media_type)}, timeout=60)
    assert form.status_code == 200 and form.content == r.content
