"""The bot under faults: SIGTERM and SIGKILL with jobs in flight, TorchServe stopped mid-job, the
allow-list, and webhook mode. Every test starts its own bot process(es) and Telegram stand-in;
photos are held in flight by delaying their download in the stand-in."""

from __future__ import annotations

import io
import json
import shutil
import signal
import sqlite3
import subprocess
import time

import pytest
import requests
from PIL import Image

from serving.server import free_port
from tests.bot_process import BotProcess
from tests.conftest import encode, photo
from tests.telegram_stub import TelegramStub, User

pytestmark = pytest.mark.integration


@pytest.fixture
def stub():
    with TelegramStub() as server:
        yield server


@pytest.fixture
def bots(stub, tmp_path):
    """Starts bot processes that share one state directory (as one pod restarting); stops them all."""
    started: list[BotProcess] = []

    def start(torchserve_url: str, **env: str) -> BotProcess:
        process = BotProcess(stub.base_url, stub.token, torchserve_url, tmp_path / "state",
                             tmp_path / f"bot{len(started)}.log", extra_env=env)
        started.append(process)
        process.start()
        process.wait_metrics()
        return process

    yield start
    for process in started:
        process.stop()


def size_of(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as img:
        return img.size


def in_flight(stub: TelegramStub, user: User) -> None:
    """Wait until the user's job has started (its status says it is being worked on)."""
    stub.wait_for(lambda: any(("Working" in t or "Обрабатываю" in t) for t in stub.texts_to(user.id)), 30,
                  f"user {user.id}'s job to start")


def documents_to(stub: TelegramStub, user: User) -> list:
    return stub.calls_of("sendDocument", user.id)


def test_sigterm_finishes_the_job_in_flight_and_keeps_the_waiting_one(stub, bots, torchserve):
    bot = bots(torchserve.inference_url, BOT_MAX_JOBS="1", BOT_SHUTDOWN_TIMEOUT="60")
    first, second = User(2001), User(2002)
    release = stub.hold("file")  # first's download hangs: the job is in flight at SIGTERM
    stub.user_photo(first, encode(photo(64, 48, seed=1), "JPEG"), 64, 48)
    in_flight(stub, first)
    stub.wait_for(lambda: stub.held() == 1, 20, "the download to be held")
    stub.user_photo(second, encode(photo(48, 40, seed=2), "JPEG"), 48, 40)
    stub.wait_for(lambda: any("position 1" in t for t in stub.texts_to(second.id)), 20, "second to be queued")

    bot.proc.send_signal(signal.SIGTERM)
    time.sleep(1.5)
    assert bot.proc.poll() is None  # still finishing the job in flight
    release()
    assert bot.proc.wait(90) == 0
    (document,) = documents_to(stub, first)  # finished before the exit
    assert size_of(document.upload("document")[1]) == (128, 96)
    assert not documents_to(stub, second)
    assert "restarting" in stub.texts_to(second.id)[-1]
    assert "resume at the next start" in bot.log()
    with sqlite3.connect(bot.db_path) as db:
        assert db.execute("SELECT user_id FROM jobs WHERE state = 'queued'").fetchall() == [(second.id,)]

    # the next start resumes the waiting job; the finished one is not done again
    bots(torchserve.inference_url)
    stub.wait_for(lambda: documents_to(stub, second), 60, "the resumed job's result")
    assert size_of(documents_to(stub, second)[0].upload("document")[1]) == (96, 80)
    assert any("restarted" in t for t in stub.texts_to(second.id))
    assert len(documents_to(stub, first)) == 1


def test_sigkill_then_restart_loses_no_accepted_photo(stub, bots, torchserve):
    bot = bots(torchserve.inference_url)
    user = User(2101, language_code="ru")
    release = stub.hold("file")
    message = stub.user_photo(user, encode(photo(80, 60, seed=3), "JPEG"), 80, 60)
    in_flight(stub, user)
    stub.wait_for(lambda: stub.held() == 1, 20, "the download to be held")
    bot.kill()
    release()
    assert not documents_to(stub, user)

    restarted = bots(torchserve.inference_url)
    stub.wait_for(lambda: documents_to(stub, user), 60, "the result after the restart")
    (document,) = documents_to(stub, user)
    assert size_of(document.upload("document")[1]) == (160, 120)
    assert document.params["reply_parameters"]["message_id"] == message["message_id"]
    assert any("перезапустился" in t for t in stub.texts_to(user.id))  # told in Russian that it resumed
    assert restarted.metric("bot_jobs_resumed_total") == 1
    # the photo's update was accepted once: one "queued" status, one result
    queued = [c for c in stub.calls_of("sendMessage", user.id) if "В очереди" in c.params["text"]]
    assert len(queued) == 1


def test_torchserve_stopped_mid_job_gets_an_apology_and_the_bot_recovers(stub, bots, torchserve):
    bot = bots(torchserve.inference_url, BOT_TORCHSERVE_RETRIES="2")
    user = User(2201)
    release = stub.hold("file")
    stub.user_photo(user, encode(photo(64, 48, seed=4), "JPEG"), 64, 48)
    in_flight(stub, user)
    stub.wait_for(lambda: stub.held() == 1, 20, "the download to be held")
    torchserve.stop()
    release()  # the job goes on, and finds TorchServe gone
    try:
        stub.wait_for(lambda: any("not answering" in t for t in stub.texts_to(user.id)), 60, "the apology")
        assert bot.proc.poll() is None
        assert bot.metric("bot_torchserve_errors_total", status="connection") >= 3  # first try + 2 retries
        assert bot.metric("bot_jobs_total", outcome="unavailable") == 1
    finally:
        torchserve.start(timeout=240)
    # TorchServe is back: the same bot process serves the next photo
    stub.user_photo(user, encode(photo(64, 48, seed=5), "JPEG"), 64, 48)
    stub.wait_for(lambda: documents_to(stub, user), 60, "a result after TorchServe came back")
    assert size_of(documents_to(stub, user)[0].upload("document")[1]) == (128, 96)


def test_webhook_mode_checks_the_secret_and_the_allow_list(stub, bots):
    port = free_port()
    secret = "webhook-secret-for-tests"
    url = f"http://127.0.0.1:{port}/telegram"
    friend, stranger = User(2401), User(2402)
    bot = bots(f"http://127.0.0.1:{free_port()}", BOT_WEBHOOK_URL=url, BOT_WEBHOOK_SECRET=secret,
               BOT_WEBHOOK_HOST="127.0.0.1", BOT_WEBHOOK_PORT=str(port), BOT_ALLOWED_USERS=f"{friend.id}, 99")
    (hook,) = stub.wait_for(lambda: stub.calls_of("setWebhook"), 20, "setWebhook")
    assert hook.params["url"] == url and hook.params["secret_token"] == secret
    update_ids = iter(range(1, 100))

    def post(user: User, content: dict, token: str = secret) -> int:
        message = {"message_id": next(update_ids) + 100, "date": 0, "chat": user.chat(), "from": user.as_dict(),
                   **content}
        body = json.dumps({"update_id": next(update_ids), "message": message})
        reply = requests.post(url, data=body, timeout=10, headers={"X-Telegram-Bot-Api-Secret-Token": token,
                                                                  "Content-Type": "application/json"})
        return reply.status_code

    start = {"text": "/start", "entities": [{"type": "bot_command", "offset": 0, "length": 6}]}
    assert post(friend, start, token="guess") == 401
    assert not stub.calls_of("sendMessage", friend.id)
    assert post(friend, start) == 200
    stub.wait_for(lambda: stub.calls_of("sendMessage", friend.id), 20, "the greeting through the webhook")
    # a user outside the allow-list is told once that the bot is private, and nothing is processed
    file_id, unique = stub.add_file(encode(photo(40, 30), "JPEG"))
    assert post(stranger, start) == 200
    assert post(stranger, {"photo": [{"file_id": file_id, "file_unique_id": unique, "width": 40, "height": 30}]}) == 200
    stub.wait_for(lambda: stub.calls_of("sendMessage", stranger.id), 20, "the stranger's notice")
    assert bot.terminate() == 0
    (notice,) = stub.calls_of("sendMessage", stranger.id)
    assert "private" in notice.params["text"]
    assert not stub.calls_of("getFile")
    log = bot.log()
    assert "not on the allow-list" in log
    assert secret not in log and stub.token not in log


@pytest.fixture
def redis_url(tmp_path):
    """A real Redis server on a free loopback port, without persistence to disk."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server not installed (scripts/setup.sh installs it)")
    import redis

    port = free_port()
    with open(tmp_path / "redis.log", "wb") as log:
        proc = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                                 "no", "--dir", str(tmp_path)], stdout=log, stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
        yield url
    finally:
        client.close()
        proc.terminate()
        proc.wait(10)


def test_mode_lives_in_redis_and_survives_a_restart(stub, bots, torchserve, redis_url, tmp_path):
    """With BOT_REDIS_URL the chosen mode, colour setting, repair strength and ×2 input are kept in
    Redis: a new bot process (nothing else shared) still knows them."""
    import redis

    from tests.test_bot_e2e import choose_mode, choose_sr_input, choose_strength, choose_vividness, open_settings

    user = User(2401)
    first = bots(torchserve.inference_url, BOT_REDIS_URL=redis_url)
    choose_mode(stub, user, "x4")
    stub.wait_for(lambda: [t for t in stub.texts_to(user.id) if "Mode:" in t], 20, "the mode confirmation")
    choose_vividness(stub, user, "vivid")
    stub.wait_for(lambda: any("restore): vivid." in t for t in stub.texts_to(user.id)), 20, "the colour setting")
    choose_strength(stub, user, "light")
    stub.wait_for(lambda: any("restore): light." in t for t in stub.texts_to(user.id)), 20, "the repair strength")
    choose_sr_input(stub, user, "compressed")
    stub.wait_for(lambda: any("restore): compressed" in t for t in stub.texts_to(user.id)), 20, "the ×2 input")
    client = redis.Redis.from_url(redis_url)
    stored = [k.decode() for k in client.keys("*")]
    assert any(str(user.id) in k for k in stored), stored
    data = [json.loads(client.get(k)) for k in stored if k.endswith(":data")]
    wanted = {"mode": "x4", "vividness": "vivid", "repair_strength": "light", "sr_input": "compressed"}
    assert wanted.items() <= data[0].items(), data
    assert first.terminate() == 0
    shutil.rmtree(tmp_path / "state")  # the job store goes too: only Redis can remember the mode

    second = bots(torchserve.inference_url, BOT_REDIS_URL=redis_url)
    stub.user_photo(user, encode(photo(40, 30, seed=6), "JPEG"), 40, 30)
    stub.wait_for(lambda: documents_to(stub, user), 60, "the result")
    assert size_of(documents_to(stub, user)[0].upload("document")[1]) == (160, 120)  # ×4, not the default
    shown = open_settings(stub, user).params["text"]
    assert "Colours (colourise and restore): vivid." in shown and "Repair strength (repair and restore): light." in shown
    assert "Photos for ×2 (upscale ×2 and restore): compressed (messenger and phone JPEGs)." in shown
    assert second.proc.poll() is None


def test_unreachable_redis_is_a_clear_start_up_error(stub, tmp_path):
    """A wrong BOT_REDIS_URL stops the bot at start with a message naming the setting."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    process = BotProcess(stub.base_url, stub.token, "http://127.0.0.1:9", tmp_path / "state", tmp_path / "bot.log",
                         extra_env={"BOT_REDIS_URL": url})
    process.start()
    try:
        code = process.proc.wait(60)
    finally:
        process.stop()
    assert code != 0
    assert "BOT_REDIS_URL" in process.log()
