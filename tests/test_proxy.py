"""The nginx front (serving/nginx/, serving/proxy.py) in front of the suite's real TorchServe.

What a client sees through it: the workflow's real status and image type, plain `curl
--data-binary` working, keys from a directory (a mounted Secret) with rotation, its own refusals
as JSON, large /predictions replies streamed with bounded memory, and the largest workflow reply
it holds within its measured bound. A test-only model and one-node workflow
(tests/big_reply_handler.py) make replies of any size.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from serving.archive import tool_path
from serving.proxy import FrontSettings, Proxy, missing, workflow_reply_bytes
from serving.server import free_port, peak_rss_bytes
from tests.conftest import encode, photo

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
KEY_A = "first-key-0123456789abcdef"
KEY_B = "second-key-abcdefghijklmnop"
BIG = "bigreply"  # the test workflow; its node model is served as /predictions/bigreply__big
BIG_MODEL = f"{BIG}__big"


@pytest.fixture(scope="module", autouse=True)
def _nginx_present():
    if reason := missing():
        pytest.fail(f"{reason}; `make setup` installs it")


def write_keys(keys_dir: Path, **keys: str) -> None:
    keys_dir.mkdir(exist_ok=True)
    for old in keys_dir.iterdir():
        old.unlink()
    for name, key in keys.items():
        (keys_dir / name).write_text(key + "\n")


@pytest.fixture(scope="module")
def big_workflow(torchserve, model_store, tmp_path_factory):
    """Register ``bigreply``: one node whose reply is as large as the request asks."""
    tmp = tmp_path_factory.mktemp("bigreply")
    handler = ROOT / "tests" / "big_reply_handler.py"
    subprocess.run([tool_path("torch-model-archiver"), "--model-name", "big", "--version", "1.0",
                    "--handler", str(handler), "--export-path", str(model_store), "--force"], check=True)
    spec = tmp / "bigreply.yaml"
    spec.write_text("models:\n  min-workers: 1\n  max-workers: 1\n  batch-size: 1\n  max-batch-delay: 1\n"
                    "  retry-attempts: 0\n  timeout-ms: 120000\n  big:\n    url: big.mar\ndag:\n  big: []\n")
    subprocess.run([tool_path("torch-workflow-archiver"), "--workflow-name", BIG, "--spec-file", str(spec),
                    "--handler", str(handler), "--export-path", str(model_store), "--force"], check=True)
    torchserve.register_workflow(BIG)
    return BIG


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("front") / "keys"
    write_keys(path, **{"inference-key": KEY_A, "previous-key": KEY_B})
    return path


@pytest.fixture(scope="module")
def front(torchserve, keys, tmp_path_factory):
    proxy = Proxy.local(tmp_path_factory.mktemp("nginx"), listen_port=free_port(),
                        upstream_port=torchserve.inference_port, keys_dir=keys, workflow_limit=2)
    proxy.start()
    yield proxy
    proxy.stop()


@pytest.fixture(autouse=True)
def _fresh_keys(request, keys):
    yield
    if "keys" in request.fixturenames:
        write_keys(keys, **{"inference-key": KEY_A, "previous-key": KEY_B})


def bearer(key: str = KEY_A) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def post(url: str, body: bytes, content_type: str | None = "image/png", timeout: float = 120,
         **headers: str) -> requests.Response:
    h = {"Content-Type": content_type} if content_type else {}
    h.update({k.replace("_", "-"): v for k, v in headers.items()})
    return requests.post(url, data=body, headers=h, timeout=timeout)


# --- what a client sees ------------------------------------------------------------------------


def test_workflow_refusal_gets_the_nodes_real_status(front, torchserve):
    body = b"definitely not an image"
    direct = post(f"{torchserve.inference_url}/wfpredict/restore", body)
    assert direct.status_code == 200 and direct.headers["Content-Type"].startswith("application/json")  # why
    r = post(f"{front.url}/wfpredict/restore", body, Authorization=f"Bearer {KEY_A}")
    assert r.status_code == 415 and r.headers["Content-Type"] == "application/json"
    assert r.json() == direct.json() and r.json()["type"] == "UnsupportedMediaType"
    # curl -f now fails instead of saving the error as restored.png
    assert subprocess.run(["curl", "-sf", "-o", "/dev/null", "-H", f"Authorization: Bearer {KEY_A}",
                           "--data-binary", "not an image", f"{front.url}/wfpredict/restore"]).returncode == 22


def test_workflow_error_code_from_any_node_and_torchserve_errors_pass(front, big_workflow):
    for code in (400, 413, 422, 503):
        r = post(f"{front.url}/wfpredict/{big_workflow}", f"{code}:error".encode(), **bearer())
        assert r.status_code == code and r.json()["code"] == code, code
    r = post(f"{front.url}/wfpredict/no_such_workflow", encode(photo(32, 32)), **bearer())
    assert r.status_code == 404 and r.headers["Content-Type"].startswith("application/json")


@pytest.mark.parametrize("accept,media_type,magic", [(None, "image/png", b"\x89PNG"),
                                                     ("image/jpeg", "image/jpeg", b"\xff\xd8\xff")])
def test_images_get_their_real_type(front, torchserve, accept, media_type, magic):
    body = encode(photo(80, 60, seed=5))
    extra = {"Accept": accept} if accept else {}
    for endpoint in ("predictions/colorize", "predictions/sr_x2", "wfpredict/restore"):
        direct = post(f"{torchserve.inference_url}/{endpoint}", body, **extra)
        via = post(f"{front.url}/{endpoint}", body, **bearer(), **extra)
        assert via.status_code == direct.status_code == 200, via.text[:200]
        assert via.headers["Content-Type"] == media_type, endpoint
        assert via.content == direct.content and via.content.startswith(magic)


def test_plain_curl_without_a_content_type_works(front, torchserve, tmp_path):
    jpeg = tmp_path / "photo.jpg"
    jpeg.write_bytes(encode(photo(96, 64, seed=2), "JPEG", quality=90))

    def curl(url: str, *args: str) -> tuple[int, str, bytes]:
        out = tmp_path / "out"
        res = subprocess.run(["curl", "-s", "-o", str(out), "-w", "%{http_code} %{content_type}", *args, url],
                             capture_output=True, text=True, timeout=120)
        code, _, ctype = res.stdout.partition(" ")
        return int(code), ctype, out.read_bytes() if out.exists() else b""

    # TorchServe alone parses the bytes as a form: a 5xx, or at best our handler's 415
    code, _, _ = curl(f"{torchserve.inference_url}/predictions/colorize", "--data-binary", f"@{jpeg}")
    assert code >= 415
    for endpoint in ("predictions/colorize", "wfpredict/restore"):
        code, ctype, data = curl(f"{front.url}/{endpoint}", "-H", f"Authorization: Bearer {KEY_A}",
                                 "--data-binary", f"@{jpeg}")
        assert (code, ctype) == (200, "image/png") and data.startswith(b"\x89PNG"), endpoint
    # a real form (not an image) is refused as such: a 4xx with JSON, never a 5xx
    code, ctype, data = curl(f"{front.url}/predictions/colorize", "-H", f"Authorization: Bearer {KEY_A}",
                             "-d", "vividness=1", "-d", "format=jpeg")
    assert 400 <= code < 500 and ctype == "application/json" and json.loads(data)["code"] == code


# --- keys ----------------------------------------------------------------------------------------


def test_requests_without_a_valid_key_are_refused_with_json(front):
    body = encode(photo(64, 48))
    for headers in ({}, bearer("wrong-key-0123456789abc"), {"Authorization": f"Basic {KEY_A}"},
                    {"Authorization": "Bearer "}, {"Authorization": KEY_A}, bearer(KEY_A + "x"), bearer(KEY_A[:-1])):
        for endpoint in ("predictions/colorize", "wfpredict/restore"):
            r = post(f"{front.url}/{endpoint}", body, **headers)
            assert r.status_code == 401, (endpoint, headers)
            assert r.json()["code"] == 401 and "Authorization: Bearer" in r.json()["message"]
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
    # both keys of the Secret open the API (a rotation without downtime); the scheme is case-blind
    for key in (KEY_A, KEY_B):
        assert post(f"{front.url}/predictions/colorize", body, Authorization=f"bearer {key}").status_code == 200
    # health needs no key (probes); it says nothing about models or data
    ping = requests.get(f"{front.url}/ping", timeout=10)
    assert ping.status_code == 200 and "Healthy" in ping.text
    assert requests.get(f"{front.url}/healthz", timeout=10).status_code == 200


def test_only_the_prediction_api_is_behind_the_front(front):
    for method, path in (("GET", "/models"), ("GET", "/api-description"), ("OPTIONS", "/"),
                         ("GET", "/v1/models"), ("POST", "/explanations/colorize"), ("GET", "/metrics")):
        r = requests.request(method, f"{front.url}{path}", headers=bearer(), timeout=10)
        assert r.status_code == 404 and r.json()["code"] == 404, path
        assert "colorize" not in r.text.replace("/predictions/<model>", "")


def test_rotated_keys_are_picked_up_without_a_reload(front, keys):
    body = encode(photo(48, 48))
    new = "third-key-zyxwvutsrqponm"
    write_keys(keys, **{"inference-key": new, "previous-key": KEY_A})  # step 1: new key, old kept
    assert post(f"{front.url}/predictions/colorize", body, **bearer(new)).status_code == 200
    assert post(f"{front.url}/predictions/colorize", body, **bearer(KEY_A)).status_code == 200
    assert post(f"{front.url}/predictions/colorize", body, **bearer(KEY_B)).status_code == 401
    write_keys(keys, **{"inference-key": new})  # step 2: the old key removed
    assert post(f"{front.url}/predictions/colorize", body, **bearer(KEY_A)).status_code == 401
    # a key too short is never accepted, the others still are; the readiness probe stays green
    write_keys(keys, **{"inference-key": new, "typo": "short"})
    assert post(f"{front.url}/predictions/colorize", body, **bearer("short")).status_code == 401
    assert post(f"{front.url}/predictions/colorize", body, **bearer(new)).status_code == 200
    assert requests.get(f"{front.url}/ping", timeout=10).status_code == 200
    # no usable key at all: everything is refused and /ping (readiness) says why
    write_keys(keys, **{"inference-key": "short"})
    assert post(f"{front.url}/predictions/colorize", body, **bearer("short")).status_code == 401
    ping = requests.get(f"{front.url}/ping", timeout=10)
    assert ping.status_code == 503 and ping.json()["type"] == "NoInferenceKey"
    assert "never accepted" in front.error_log.read_text()


def test_kubernetes_secret_layout_is_read(front, keys):
    """A mounted Secret: hidden ..data directories, and the keys as links into them."""
    for old in keys.iterdir():
        old.unlink()
    data = keys / "..2026_01_01_00_00_00.000000001"
    data.mkdir()
    (data / "inference-key").write_text(KEY_B)
    (keys / "..data").symlink_to(data.name)
    (keys / "inference-key").symlink_to("..data/inference-key")
    try:
        r = post(f"{front.url}/predictions/colorize", encode(photo(32, 32)), **bearer(KEY_B))
        assert r.status_code == 200
    finally:
        for p in (keys / "inference-key", keys / "..data", data / "inference-key"):
            p.unlink()
        data.rmdir()


# --- the front's own refusals ------------------------------------------------------------------


def test_unreachable_torchserve_is_a_503_with_retry_after(tmp_path):
    proxy = Proxy.local(tmp_path / "nginx", listen_port=free_port(), upstream_port=free_port())
    proxy.start()
    try:
        for endpoint in ("predictions/colorize", "wfpredict/restore"):
            r = post(f"{proxy.url}/{endpoint}", encode(photo(32, 32)))
            assert r.status_code == 503 and r.headers["Retry-After"] == "5", endpoint
            assert r.json()["code"] == 503 and "not reachable" in r.json()["message"]
    finally:
        proxy.stop()


def test_bodies_over_the_limit_get_a_413_json(front):
    limit = front.settings.max_body
    for endpoint in ("predictions/sr_x2", "wfpredict/restore"):
        r = post(f"{front.url}/{endpoint}", b"\0" * (limit + 1), **bearer())
        assert r.status_code == 413 and r.json()["type"] == "TooManyBytes", endpoint
        assert f"{limit // 1_000_000} MB" in r.json()["message"]


def test_workflow_requests_beyond_the_limit_get_503_with_retry_after(front, big_workflow):
    """workflow_limit=2 here: a third request while two are in flight is refused at the door."""
    results: list[int] = []

    def call():
        results.append(post(f"{front.url}/wfpredict/{big_workflow}", b"2500:sleep", **bearer()).status_code)

    threads = [threading.Thread(target=call) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(1.0)  # both are in flight: one in the node's single worker, one queued behind it
    started = time.monotonic()
    refused = post(f"{front.url}/wfpredict/{big_workflow}", b"8:png", **bearer())
    assert time.monotonic() - started < 1.0  # refused at once, not queued
    for t in threads:
        t.join(120)
    assert results == [200, 200]
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "5"
    assert refused.json()["type"] == "TooManyWorkflowRequests"
    # once they are done the next one is taken; /predictions has no such limit
    assert post(f"{front.url}/wfpredict/{big_workflow}", b"8:png", **bearer()).status_code == 200
    assert post(f"{front.url}/predictions/{BIG_MODEL}", b"8:raw", **bearer()).status_code == 200


def test_access_log_has_a_line_per_request_with_status_and_upstream_time(front):
    # Only this test's requests are counted (by their user agent): a line of an earlier test's
    # streamed reply can land after this test has begun, since nginx logs when it finalizes a request.
    ua = f"access-log-test-{time.monotonic_ns()}"
    post(f"{front.url}/predictions/colorize", encode(photo(32, 32)), **bearer(), User_Agent=ua)
    post(f"{front.url}/wfpredict/restore", b"not an image", **bearer(), User_Agent=ua)
    post(f"{front.url}/predictions/colorize", b"x", **bearer("nope-nope-nope-nope"), User_Agent=ua)
    time.sleep(0.5)  # each worker process writes its line when it has finalized the request
    lines = [line for line in front.access_log.read_text().splitlines() if f'ua="{ua}"' in line]
    assert len(lines) == 3, lines
    for pattern in (r'"POST /predictions/colorize HTTP/1.1" 200 \d+ rt=[\d.]+ ut=[\d.]+ ',
                    r'"POST /wfpredict/restore HTTP/1.1" 415 \d+ rt=[\d.]+ ut=[\d.]+ ',
                    # refused at the door: TorchServe was not asked, so no upstream time
                    r'"POST /predictions/colorize HTTP/1.1" 401 \d+ rt=[\d.]+ ut= '):
        assert [line for line in lines if re.search(pattern, line)], (pattern, lines)


# --- memory --------------------------------------------------------------------------------------


def _reset_peaks(proxy: Proxy) -> list[int]:
    pids = proxy.worker_pids()
    assert pids
    for pid in pids:
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := current RSS
    return pids


def _peak_growth(pids: list[int], before: dict[int, int]) -> int:
    return max(peak_rss_bytes(pid) - before[pid] for pid in pids)


def test_a_200_mb_prediction_reply_streams_with_bounded_proxy_memory(front, big_workflow):
    size = 200_000_000
    pids = _reset_peaks(front)
    before = {pid: peak_rss_bytes(pid) for pid in pids}
    got = 0
    with requests.post(f"{front.url}/predictions/{BIG_MODEL}", data=f"{size}:raw".encode(), stream=True,
                       headers={**bearer(), "Content-Type": "application/octet-stream"}, timeout=300) as r:
        assert r.status_code == 200, r.content[:300]
        assert int(r.headers["Content-Length"]) == size
        for i, chunk in enumerate(r.iter_content(1 << 20)):
            got += len(chunk)
            if i == 10:
                time.sleep(1.0)  # a slow reader: nginx stops reading from TorchServe, not growing
    assert got == size
    growth = _peak_growth(pids, before)
    assert growth < 16 * 2**20, f"nginx grew by {growth / 2**20:.0f} MiB for a streamed 200 MB reply"


def test_the_largest_workflow_reply_passes_within_its_memory_bound(front, big_workflow):
    """The largest reply TorchServe lets a workflow give (max_response_size) comes through, and the
    front holds about twice its size while it does: its reading plus the njs copy it answers from."""
    size = workflow_reply_bytes()
    assert size == front.settings.workflow_reply_max
    pids = _reset_peaks(front)
    before = {pid: peak_rss_bytes(pid) for pid in pids}
    r = post(f"{front.url}/wfpredict/{big_workflow}", f"{size}:png".encode(), timeout=300, **bearer())
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/png" and len(r.content) == size
    growth = _peak_growth(pids, before)
    print(f"front peak growth for a {size / 2**20:.0f} MiB workflow reply: {growth / 2**20:.0f} MiB "
          f"({growth / size:.2f}x)")
    assert growth <= 2.1 * size + 16 * 2**20, f"{growth / 2**20:.0f} MiB for a {size / 2**20:.0f} MiB reply"
    del r


def test_rendered_configuration_passes_nginx_t(tmp_path):
    """Every variant the project renders is one nginx accepts (the cluster's own: k8s tests)."""
    for keys_dir in (None, tmp_path / "keys"):
        Proxy(FrontSettings(run_dir=tmp_path / "run", keys_dir=keys_dir)).write_config()
        Proxy(FrontSettings(run_dir=tmp_path / "run", keys_dir=keys_dir)).check()
