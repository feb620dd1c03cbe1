"""The bot's secrets as files (Kubernetes mounts Secrets so): ``NAME_FILE`` settings, the TorchServe
key re-read when its file changes (a rotation without a restart), redaction of the current key,
and Redis with a password, started with the cluster manifest's own command."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from aiohttp import web
from PIL import Image

from bot.app import check_storage, make_storage
from bot.config import ConfigError, Settings
from bot.credentials import FileSecret
from bot.logs import REDACTED, RedactSecrets
from bot.torchserve import TorchServeClient
from serving.server import free_port

TOKEN = "123456:ABCdef-telegram"


def kubelet_secret(folder: Path, data: dict[str, str]) -> None:
    """Write a Secret's files the way the kubelet does: a fresh timestamped folder, then one atomic
    rename of the ``..data`` link; each key is a link through ``..data``."""
    folder.mkdir(exist_ok=True)
    fresh = folder / f"..{time.monotonic_ns()}"
    fresh.mkdir()
    for key, value in data.items():
        (fresh / key).write_text(value)
    tmp = folder / "..data_tmp"
    tmp.symlink_to(fresh.name)
    os.replace(tmp, folder / "..data")
    for key in data:
        if not (folder / key).is_symlink():
            (folder / key).symlink_to(f"..data/{key}")
    for key in [p.name for p in folder.iterdir() if not p.name.startswith("..")]:
        if key not in data:
            (folder / key).unlink()


# -- settings --------------------------------------------------------------------------------------


def test_every_secret_setting_can_come_from_a_file(tmp_path):
    kubelet_secret(tmp_path / "bot", {"telegram-bot-token": TOKEN + "\n", "allowed-users": "12, 34",
                                      "webhook-url": "https://bot.example.com/telegram", "webhook-secret": "s3cr3t"})
    kubelet_secret(tmp_path / "redis", {"password": "redis-pw"})
    s = Settings.from_env({
        "TELEGRAM_BOT_TOKEN_FILE": str(tmp_path / "bot" / "telegram-bot-token"),
        "BOT_ALLOWED_USERS_FILE": str(tmp_path / "bot" / "allowed-users"),
        "BOT_WEBHOOK_URL_FILE": str(tmp_path / "bot" / "webhook-url"),
        "BOT_WEBHOOK_SECRET_FILE": str(tmp_path / "bot" / "webhook-secret"),
        "BOT_REDIS_PASSWORD_FILE": str(tmp_path / "redis" / "password"),
        "TORCHSERVE_TOKEN_FILE": str(tmp_path / "key" / "inference-key"),  # not there yet: fine
    })
    assert s.token == TOKEN and s.allowed_users == {12, 34}
    assert (s.webhook_url, s.webhook_secret, s.redis_password) == ("https://bot.example.com/telegram", "s3cr3t",
                                                                    "redis-pw")
    assert s.torchserve_token is None and s.torchserve_key()() is None


def test_environment_values_still_work_for_local_use():
    s = Settings.from_env({"TELEGRAM_BOT_TOKEN": TOKEN, "TORCHSERVE_TOKEN": "k", "BOT_ALLOWED_USERS": "5"})
    assert s.token == TOKEN and s.torchserve_key() == "k" and s.allowed_users == {5}


def test_file_settings_fail_clearly(tmp_path):
    (tmp_path / "t").write_text(TOKEN)
    with pytest.raises(ConfigError, match="TELEGRAM_BOT_TOKEN_FILE=.*no such file"):
        Settings.from_env({"TELEGRAM_BOT_TOKEN_FILE": str(tmp_path / "missing")})
    with pytest.raises(ConfigError, match="both TELEGRAM_BOT_TOKEN and TELEGRAM_BOT_TOKEN_FILE"):
        Settings.from_env({"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_BOT_TOKEN_FILE": str(tmp_path / "t")})
    with pytest.raises(ConfigError, match="both TORCHSERVE_TOKEN and TORCHSERVE_TOKEN_FILE"):
        Settings.from_env({"TELEGRAM_BOT_TOKEN": TOKEN, "TORCHSERVE_TOKEN": "k", "TORCHSERVE_TOKEN_FILE": "/x"})
    # the allow-list key is optional in the Secret: absent from the folder means everybody
    s = Settings.from_env({"TELEGRAM_BOT_TOKEN_FILE": str(tmp_path / "t"),
                           "BOT_ALLOWED_USERS_FILE": str(tmp_path / "allowed-users")})
    assert s.allowed_users == frozenset()


# -- the TorchServe key, re-read on change ---------------------------------------------------------


def test_file_secret_follows_a_kubelet_rotation(tmp_path):
    folder = tmp_path / "key"
    secret = FileSecret(folder / "inference-key")
    assert secret() is None  # not published yet
    kubelet_secret(folder, {"inference-key": "old-key\n"})
    assert secret() == "old-key"
    kubelet_secret(folder, {"inference-key": "new-key", "previous-key": "old-key"})
    assert secret() == "new-key"
    assert "new-key" not in repr(secret)
    kubelet_secret(folder, {})
    assert secret() is None


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (4, 4), "white").save(out, "PNG")
    return out.getvalue()


def test_client_sends_the_key_the_file_holds_at_each_request(tmp_path):
    """A rotated key is used from the next request on, with the same client (no restart)."""
    folder = tmp_path / "key"
    kubelet_secret(folder, {"inference-key": "first"})
    seen: list[str | None] = []

    async def predict(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        return web.Response(body=_png(), content_type="image/png")

    async def scenario() -> None:
        app = web.Application()
        app.router.add_post("/predictions/sr_x2", predict)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            async with TorchServeClient(f"http://127.0.0.1:{port}", token=FileSecret(folder / "inference-key"),
                                        retries=0) as client:
                await client.predict("/predictions/sr_x2", b"x")
                kubelet_secret(folder, {"inference-key": "second", "previous-key": "first"})
                await client.predict("/predictions/sr_x2", b"x")
        finally:
            await runner.cleanup()

    asyncio.run(scenario())
    assert seen == ["Bearer first", "Bearer second"]


def test_redaction_follows_the_current_key(tmp_path):
    folder = tmp_path / "key"
    kubelet_secret(folder, {"inference-key": "first-key-value"})
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(self.format(record))

    handler = Keep()
    handler.addFilter(RedactSecrets([TOKEN, FileSecret(folder / "inference-key")]))
    logger = logging.getLogger("test.redaction.file")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("key %s", "first-key-value")
        kubelet_secret(folder, {"inference-key": "second-key-value"})
        logger.warning("key %s, token %s", "second-key-value", TOKEN)
    finally:
        logger.removeHandler(handler)
    assert records == [f"key {REDACTED}", f"key {REDACTED}, token {REDACTED}"]


# -- Redis with a password, as the webhook component runs it ---------------------------------------


@pytest.fixture
def redis_with_password(tmp_path):
    """Redis started with the bot-webhook component's own command and password file."""
    if shutil.which("redis-server") is None or shutil.which("kubectl") is None:
        pytest.skip("needs redis-server and kubectl")
    from tests.test_k8s_manifests import K8S, container, kustomize

    objs = kustomize(K8S / "overlays" / "gpu-scaled")
    redis = next(o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == "pix2pix-redis")
    c = container(redis, "redis")
    mount = next(m["mountPath"] for m in c["volumeMounts"] if m["name"] == "password")
    kubelet_secret(tmp_path / "secret", {"password": "0123456789abcdef0123"})
    port = free_port()
    script = c["command"][2].replace(mount, str(tmp_path / "secret"))
    script = script.replace("redis-server -", f"redis-server - --port {port} --bind 127.0.0.1 --dir {tmp_path}", 1)
    assert c["command"][:2] == ["sh", "-c"] and str(port) in script
    with open(tmp_path / "redis.log", "wb") as log:
        proc = subprocess.Popen(["sh", "-c", script], stdout=log, stderr=subprocess.STDOUT)
    probe = c["readinessProbe"]["exec"]["command"][2].replace(mount, str(tmp_path / "secret"))
    probe = probe.replace("redis-cli", f"redis-cli -p {port}")
    try:
        deadline = time.monotonic() + 20
        while subprocess.run(["sh", "-c", probe], capture_output=True).returncode != 0:
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "redis.log").read_text()
            time.sleep(0.1)
        yield f"redis://127.0.0.1:{port}/0", tmp_path / "secret" / "password"
    finally:
        proc.terminate()
        proc.wait(10)


def test_redis_needs_the_password_and_the_bot_sends_it(redis_with_password):
    url, password_file = redis_with_password
    # without the password: refused at start, with a message naming the setting
    anonymous = make_storage(Settings(token=TOKEN, redis_url=url))
    with pytest.raises(ConfigError, match="BOT_REDIS_URL"):
        asyncio.run(check_storage(anonymous))
    settings = Settings.from_env({"TELEGRAM_BOT_TOKEN": TOKEN, "BOT_REDIS_URL": url,
                                  "BOT_REDIS_PASSWORD_FILE": str(password_file)})

    async def scenario() -> None:
        storage = make_storage(settings)
        try:
            await check_storage(storage)
        finally:
            await storage.close()

    asyncio.run(scenario())
    with pytest.raises(ConfigError, match="use one of them"):
        make_storage(Settings(token=TOKEN, redis_url=url.replace("//", "//:pw@"), redis_password="pw"))
