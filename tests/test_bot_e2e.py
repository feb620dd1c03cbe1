"""The real bot process against the Telegram stand-in and a real TorchServe serving tiny models.

One bot for the module; every test plays a different user so the conversations stay apart. The
colour-, repair- and ×2-input-setting tests run a second bot (with its own Telegram stand-in) whose
TorchServe calls go through a recording pass-through, so the headers it sends can be read back.
"""

from __future__ import annotations

import asyncio
import io
import json
import threading
from dataclasses import dataclass

import aiohttp
import numpy as np
import pytest
from aiohttp import web
from multidict import CIMultiDict
from PIL import Image

from tests.bot_process import BotProcess
from tests.conftest import encode, photo
from tests.hostile import corpus
from tests.telegram_stub import TelegramStub, User

pytestmark = pytest.mark.integration

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def stub():
    with TelegramStub() as server:
        yield server


@pytest.fixture(scope="module")
def bot(stub, torchserve, tmp_path_factory):
    work = tmp_path_factory.mktemp("bot")
    process = BotProcess(stub.base_url, stub.token, torchserve.inference_url, work / "state", work / "bot.log",
                         extra_env={"BOT_MAX_JOBS": "2"})
    process.start()
    try:
        process.wait_metrics()
        yield process
    finally:
        process.stop()


def size_of(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as img:
        return img.size


def choose_mode(stub: TelegramStub, user: User, mode: str) -> None:
    """/mode, then tap the button, as a user would."""
    def keyboards():
        return [c for c in stub.calls_of("sendMessage", user.id) if "reply_markup" in c.params]

    shown = len(keyboards())
    stub.user_text(user, "/mode")
    keyboard = stub.wait_for(lambda: len(keyboards()) > shown and keyboards(), 20, "the mode keyboard")[-1]
    buttons = [b for row in keyboard.params["reply_markup"]["inline_keyboard"] for b in row]
    data = next(b["callback_data"] for b in buttons if b["callback_data"] == f"mode:{mode}")
    message = stub.messages[(user.id, keyboard.result["message_id"])]
    before = len(stub.calls_of("answerCallbackQuery"))
    stub.user_presses(user, message, data)
    stub.wait_for(lambda: len(stub.calls_of("answerCallbackQuery")) > before, 20, "the button answer")


def open_settings(stub: TelegramStub, user: User):
    """/settings; returns the sendMessage call that showed it (text and keyboard)."""
    def menus():
        return [c for c in stub.calls_of("sendMessage", user.id)
                if "reply_markup" in c.params and ("comparison" in c.params["text"].lower()
                                                   or "сравнение" in c.params["text"].lower())]

    shown = len(menus())
    stub.user_text(user, "/settings")
    return stub.wait_for(lambda: len(menus()) > shown and menus(), 20, "the settings message")[-1]


def buttons_of(call) -> list[dict]:
    return [b for row in call.params["reply_markup"]["inline_keyboard"] for b in row]


def choose_vividness(stub: TelegramStub, user: User, choice: str) -> None:
    """/settings, then tap natural, default or vivid, as a user would; waits for the answer."""
    menu = open_settings(stub, user)
    data = f"viv:{choice}"
    assert data in [b["callback_data"] for b in buttons_of(menu)]
    before = len(stub.calls_of("answerCallbackQuery"))
    stub.user_presses(user, stub.messages[(user.id, menu.result["message_id"])], data)
    stub.wait_for(lambda: len(stub.calls_of("answerCallbackQuery")) > before, 20, "the button answer")


def choose_strength(stub: TelegramStub, user: User, choice: str) -> None:
    """/settings, then tap light, medium or full repair, as a user would; waits for the answer."""
    menu = open_settings(stub, user)
    data = f"rep:{choice}"
    assert data in [b["callback_data"] for b in buttons_of(menu)]
    before = len(stub.calls_of("answerCallbackQuery"))
    stub.user_presses(user, stub.messages[(user.id, menu.result["message_id"])], data)
    stub.wait_for(lambda: len(stub.calls_of("answerCallbackQuery")) > before, 20, "the button answer")


def choose_sr_input(stub: TelegramStub, user: User, choice: str) -> None:
    """/settings, then tap sharp originals (clean) or compressed photos, as a user would; waits for
    the answer."""
    menu = open_settings(stub, user)
    data = f"sri:{choice}"
    assert data in [b["callback_data"] for b in buttons_of(menu)]
    before = len(stub.calls_of("answerCallbackQuery"))
    stub.user_presses(user, stub.messages[(user.id, menu.result["message_id"])], data)
    stub.wait_for(lambda: len(stub.calls_of("answerCallbackQuery")) > before, 20, "the button answer")


def results_for(stub: TelegramStub, user: User, count: int, timeout: float = 60.0):
    """Wait for ``count`` documents to the user; return (photos, documents) sent to them."""
    stub.wait_for(lambda: len(stub.calls_of("sendDocument", user.id)) >= count, timeout, f"{count} documents")
    return stub.calls_of("sendPhoto", user.id), stub.calls_of("sendDocument", user.id)


def test_start_help_and_mode_in_both_languages(stub, bot):
    ru, en = User(1001, language_code="ru"), User(1002, language_code="en-GB")
    stub.user_text(ru, "/start")
    stub.user_text(en, "/help")
    start = stub.wait_for(lambda: stub.calls_of("sendMessage", ru.id), 20, "the greeting")[0]
    assert "Привет" in start.params["text"] and "убирает дефекты" in start.params["text"]
    rows = [[b["text"] for b in row] for row in start.params["reply_markup"]["inline_keyboard"]]
    labels = [label for row in rows for label in row]
    assert len(labels) == 5 and [len(row) for row in rows] == [2, 2, 1]
    assert any("Раскрасить" in label for label in labels) and any("Ретушь" in label for label in labels)
    assert rows[-1] == ["• ✨ Восстановить (ретушь + цвет + ×2)"]  # the default mode, marked
    help_text = stub.wait_for(lambda: stub.calls_of("sendMessage", en.id), 20, "the help")[0].params["text"]
    assert "Colourise" in help_text and "20 MB" in help_text and "Privacy" in help_text
    assert "• Repair —" in help_text and "• Restore — repair, colourise, then ×2." in help_text
    # the command menu is set in both languages
    menus = {c.params.get("language_code") for c in stub.calls_of("setMyCommands")}
    assert menus == {None, "ru"}
    choose_mode(stub, ru, "x4")
    edited = stub.wait_for(lambda: [t for t in stub.texts_to(ru.id) if "Режим:" in t], 20, "the mode confirmation")
    assert "×4" in edited[-1]


def test_photo_gives_a_photo_and_a_document_of_the_right_size(stub, bot):
    user = User(1101)
    choose_mode(stub, user, "x2")
    stub.user_photo(user, encode(photo(160, 120, seed=1), "JPEG", quality=90), 160, 120)
    photos, documents = results_for(stub, user, 1)
    assert len(photos) == 1 and len(documents) == 1
    name, png = documents[0].upload("document")
    assert png.startswith(PNG_MAGIC) and size_of(png) == (320, 240) and name.endswith("_x2.png")
    _, jpeg = photos[0].upload("photo")
    assert jpeg.startswith(b"\xff\xd8") and size_of(jpeg) == (320, 240)
    assert "320×240" in photos[0].params["caption"]
    # "sending photo" was shown, and the single status message is gone after the result
    assert stub.calls_of("sendChatAction", user.id)
    status_sent = [c for c in stub.calls_of("sendMessage", user.id) if "queue" in c.params["text"]]
    assert len(status_sent) == 1
    stub.wait_for(lambda: stub.calls_of("deleteMessage", user.id), 10, "the status message removed")
    assert not [m for m in stub.visible_bot_messages(user.id) if "queue" in (m.get("text") or "")]


def test_document_input_keeps_the_original_and_restore_mode_uses_the_workflow(stub, bot):
    user = User(1201)
    grey = photo(96, 64, seed=2).convert("L")
    stub.user_document(user, encode(grey, "PNG"), "grandpa 1952.png", "image/png")  # default mode: restore
    photos, documents = results_for(stub, user, 1)
    name, png = documents[0].upload("document")
    assert name == "grandpa_1952_restore.png" and png.startswith(PNG_MAGIC) and size_of(png) == (192, 128)
    colours = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    assert colours.shape == (128, 192, 3)
    assert photos and size_of(photos[0].upload("photo")[1]) == (192, 128)


def test_repair_mode_gives_a_result_of_the_same_size(stub, bot):
    user = User(1251)
    choose_mode(stub, user, "repair")
    stub.wait_for(lambda: any(t == "Mode: 🩹 Repair. Now send a photo." for t in stub.texts_to(user.id)), 20,
                  "the mode confirmation")
    stub.user_photo(user, encode(photo(96, 72, seed=25), "JPEG", quality=60), 96, 72)
    photos, documents = results_for(stub, user, 1)
    name, png = documents[0].upload("document")
    assert png.startswith(PNG_MAGIC) and size_of(png) == (96, 72) and name == "photo_repair.png"
    assert len(photos) == 1 and size_of(photos[0].upload("photo")[1]) == (96, 72)
    assert photos[0].params["caption"] == "🩹 Repair · 96×72"
    # the size check before the download is the same-size one: a photo Telegram says is 6000×5000
    # (30 MP) is taken by repair (×4 would refuse it: 120 MP out); the stand-in's bytes are small
    before = len(stub.calls_of("getFile"))
    stub.user_photo(user, encode(photo(60, 50, seed=26), "JPEG"), 6000, 5000)
    _, documents = results_for(stub, user, 2)
    assert len(stub.calls_of("getFile")) > before and size_of(documents[1].upload("document")[1]) == (60, 50)
    assert not any("upscaled" in t for t in stub.texts_to(user.id))
    assert bot.metric("bot_jobs_total", mode="repair", outcome="ok") >= 1


def test_album_every_image_is_processed_under_one_status_message(stub, bot):
    user = User(1301)
    choose_mode(stub, user, "colorize")
    sizes = [(80, 60), (64, 64), (72, 48)]
    for seed, (w, h) in enumerate(sizes):
        stub.user_photo(user, encode(photo(w, h, seed=10 + seed), "JPEG"), w, h, media_group_id="album-1")
    photos, documents = results_for(stub, user, 3)
    assert sorted(size_of(d.upload("document")[1]) for d in documents) == sorted(sizes)
    assert len(photos) == 3
    status = [c for c in stub.calls_of("sendMessage", user.id) if "queue" in c.params["text"]]
    assert len(status) == 1, [c.params["text"] for c in status]
    progress = [t for t in stub.texts_to(user.id) if "/3)" in t]
    assert any("(1/3)" in t for t in progress) and any("(2/3)" in t for t in progress)


def test_anything_but_an_image_gets_a_hint(stub, bot):
    user = User(1401, language_code="ru")
    stub.user_document(user, b"%PDF-1.7\n...", "report.pdf", "application/pdf")
    stub.user_location(user)
    stub.user_text(user, "hello")
    # a renamed non-image passes the name check but not the image check
    stub.user_document(user, b"<html><body>not an image</body></html>", "cat.jpg", "image/jpeg")
    replies = stub.wait_for(lambda: len(stub.calls_of("sendMessage", user.id)) >= 5 and
                            stub.calls_of("sendMessage", user.id), 30, "four answers and a status")
    texts = [c.params["text"] for c in replies]
    assert sum("только с изображениями" in t for t in texts) == 2
    assert any("/help" in t for t in texts)
    stub.wait_for(lambda: any("прочитать файл как изображение" in t for t in stub.texts_to(user.id)), 30,
                  "the refusal of the renamed file")
    assert not stub.calls_of("sendDocument", user.id)


def test_oversize_files_and_pixels_are_refused_with_an_explanation(stub, bot):
    user = User(1501)
    # 25 MB: over Telegram's 20 MB download limit, refused before any download
    stub.user_document(user, None, "huge.tiff", "image/tiff", size=25_000_000)
    stub.wait_for(lambda: any("25.0 MB" in t for t in stub.texts_to(user.id)), 20, "the size refusal")
    # a small file with too many pixels: 8000×6000 = 48 MP > 40 MP, found after the download
    big = Image.new("L", (8000, 6000), 128)
    stub.user_document(user, encode(big, "PNG"), "flat.png", "image/png")
    stub.wait_for(lambda: any("8000×6000" in t for t in stub.texts_to(user.id)), 30, "the pixel refusal")
    # ×4 of 3000×2500 would give 120 MP > 64 MP: the photo's size says so, nothing is downloaded
    choose_mode(stub, user, "x4")
    downloads = len(stub.calls_of("getFile"))
    stub.user_photo(user, encode(photo(300, 250), "JPEG"), 3000, 2500)
    stub.wait_for(lambda: any("×4" in t and "64" in t for t in stub.texts_to(user.id)), 20, "the output refusal")
    assert len(stub.calls_of("getFile")) == downloads
    assert not stub.calls_of("sendDocument", user.id)


def test_telegram_429_5xx_and_dropped_connections_are_retried(stub, bot):
    user = User(1601)
    choose_mode(stub, user, "x2")
    stub.fail("sendPhoto", status=429, retry_after=1, chat_id=user.id)
    stub.fail("sendDocument", status=502, description="Bad Gateway", chat_id=user.id)
    stub.fail("deleteMessage", drop=True, chat_id=user.id)
    stub.user_photo(user, encode(photo(64, 48, seed=3), "JPEG"), 64, 48)
    photos, documents = results_for(stub, user, 1)
    assert len(photos) == len(documents) == 1
    tries = [c for c in stub.calls if c.method == "sendPhoto" and c.chat_id == user.id]
    assert [c.status for c in tries] == [429, 200]
    assert tries[1].at - tries[0].at >= 0.95  # waited retry_after
    assert [c.status for c in stub.calls if c.method == "sendDocument" and c.chat_id == user.id] == [502, 200]
    stub.wait_for(lambda: stub.calls_of("deleteMessage", user.id), 20, "the status removal after a dropped call")
    assert bot.proc.poll() is None
    assert bot.metric("bot_telegram_errors_total", kind="retry_after") >= 1
    assert bot.metric("bot_telegram_errors_total", kind="server_error") >= 1
    assert bot.metric("bot_telegram_errors_total", kind="network") >= 1


def test_a_user_who_blocked_the_bot_is_skipped(stub, bot):
    gone, next_user = User(1701), User(1702)
    stub.fail("sendPhoto", status=403, chat_id=gone.id)
    stub.user_photo(gone, encode(photo(40, 30), "JPEG"), 40, 30)
    stub.wait_for(lambda: [c for c in stub.calls if c.method == "sendPhoto" and c.chat_id == gone.id], 60,
                  "the refused send")
    stub.user_photo(next_user, encode(photo(40, 30), "JPEG"), 40, 30)
    results_for(stub, next_user, 1)
    assert not stub.calls_of("sendDocument", gone.id)
    assert "blocked the bot" in bot.log()
    assert bot.proc.poll() is None


def test_before_after_comparison_is_a_setting(stub, bot):
    user = User(1801)
    stub.user_text(user, "/settings")
    menu = stub.wait_for(lambda: [c for c in stub.calls_of("sendMessage", user.id) if "reply_markup" in c.params],
                         20, "the settings switch")[0]
    (button,), colours, strengths, sr_inputs = menu.params["reply_markup"]["inline_keyboard"]
    assert "off" in button["text"] and button["callback_data"] == "cmp:1"
    assert [b["callback_data"] for b in colours] == ["viv:natural", "viv:default", "viv:vivid"]
    assert [b["callback_data"] for b in strengths] == ["rep:light", "rep:medium", "rep:full"]
    assert [b["callback_data"] for b in sr_inputs] == ["sri:clean", "sri:compressed"]
    stub.user_presses(user, stub.messages[(user.id, menu.result["message_id"])], button["callback_data"])
    stub.wait_for(lambda: any("comparison: on" in t for t in stub.texts_to(user.id)), 20, "the switch turned on")
    choose_mode(stub, user, "x2")
    stub.user_photo(user, encode(photo(50, 40, seed=6), "JPEG"), 50, 40)
    results_for(stub, user, 1)
    photos = stub.wait_for(lambda: len(stub.calls_of("sendPhoto", user.id)) >= 2 and stub.calls_of("sendPhoto", user.id),
                           20, "the result and the comparison")
    pair = [c for c in photos if c.params.get("caption") == "Before / after"]
    assert len(pair) == 1 and size_of(pair[0].upload("photo")[1]) == (100 + 8 + 100, 80)


def test_one_job_per_user_and_cancel_of_the_waiting_one(stub, bot):
    user = User(1901)
    release = stub.hold("file")
    stub.user_photo(user, encode(photo(40, 30, seed=7), "JPEG"), 40, 30)
    stub.wait_for(lambda: stub.held() == 1, 20, "the first download to be held")
    second = stub.user_photo(user, encode(photo(40, 30, seed=8), "JPEG"), 40, 30)
    # a free slot exists (BOT_MAX_JOBS=2), but the user's second job waits for the first
    stub.wait_for(lambda: len([c for c in stub.calls_of("sendMessage", user.id) if "position 1" in c.params["text"]]) == 2,
                  20, "the second job queued")
    stub.user_text(user, "/cancel")
    stub.wait_for(lambda: any("Cancelled 1" in t for t in stub.texts_to(user.id)), 20, "the cancel reply")
    release()
    results_for(stub, user, 1)
    stub.wait_for(lambda: len(stub.calls_of("deleteMessage", user.id)) == 2, 20, "both status messages removed")
    assert len(stub.calls_of("sendDocument", user.id)) == 1
    cancelled_file = second["photo"][-1]["file_id"]
    assert not [c for c in stub.calls_of("getFile") if c.params["file_id"] == cancelled_file]


def test_hostile_files_get_a_refusal_or_a_result_and_the_bot_stays_up(stub, bot):
    """The shared hostile corpus (bombs, truncated, polyglots, odd modes...) sent as files."""
    cases = corpus()
    users = {case.name: User(3000 + i) for i, case in enumerate(cases)}
    sent = {}
    extension = {"image/png": "png", "image/gif": "gif", "image/webp": "webp", "image/bmp": "bmp",
                 "image/tiff": "tiff", "image/heic": "heic", "image/avif": "avif"}
    for case in cases:
        name = f"{case.name}.{extension.get(case.content_type, 'jpg')}"
        sent[case.name] = stub.user_document(users[case.name], case.data, name,
                                             case.content_type if case.content_type.startswith("image/")
                                             else "image/jpeg")

    def answered(case) -> str | None:
        uid = users[case.name].id
        if stub.calls_of("sendDocument", uid):
            return "image"
        replies = [c for c in stub.calls_of("sendMessage", uid)
                   if (c.params.get("reply_parameters") or {}).get("message_id") == sent[case.name]["message_id"]]
        return "error" if replies else None

    stub.wait_for(lambda: all(answered(c) for c in cases), 120, "an answer to every hostile file")
    for case in cases:
        got = answered(case)
        assert case.expect in ("any", got), f"{case.name}: expected {case.expect}, got {got}"
        if got == "image":
            png = stub.calls_of("sendDocument", users[case.name].id)[0].upload("document")[1]
            assert png.startswith(PNG_MAGIC)
        else:
            texts = stub.texts_to(users[case.name].id)
            assert not any("Sorry" in t for t in texts), f"{case.name}: {texts}"  # a refusal, not a fault
    assert bot.proc.poll() is None
    peak_kb = int(next(line.split()[1] for line in open(f"/proc/{bot.proc.pid}/status")  # noqa: SIM115
                       if line.startswith("VmHWM:")))
    assert peak_kb < 600_000, f"the bot's peak memory was {peak_kb / 1024:.0f} MB"


def test_metrics_and_no_secrets_or_leftovers(stub, bot):
    assert bot.metric("bot_updates_total", type="message") >= 10
    assert bot.metric("bot_updates_total", type="callback_query") >= 3
    assert bot.metric("bot_jobs_total", mode="x2", outcome="ok") >= 2
    assert bot.metric("bot_jobs_total", outcome="refused") >= 2
    assert bot.metric("bot_torchserve_request_seconds_count", target="restore") >= 1
    assert bot.metric("bot_job_seconds_count") >= 5
    assert bot.metric("bot_queue_depth") == 0
    log = bot.log()
    assert stub.token not in log and stub.token.split(":")[1] not in log
    # nothing but the job store in the state directory: no image was written to disk
    files = sorted(p.name for p in bot.state_dir.iterdir())
    assert all(name.startswith("jobs.sqlite3") for name in files), files


def test_json_fields_the_bot_sends_are_valid(stub, bot):
    """Keyboards and reply parameters reach Telegram as JSON objects it can read."""
    for call in stub.calls_of("sendMessage"):
        markup = call.params.get("reply_markup")
        if markup is not None:
            assert isinstance(markup, dict) and "inline_keyboard" in markup, json.dumps(markup)[:200]
    for call in stub.calls_of("sendPhoto"):
        assert isinstance(call.params.get("reply_parameters"), dict) or call.params.get("caption") == "Before / after"


# -- the colour setting (X-Vividness) ----------------------------------------------------------


@dataclass
class Forwarded:
    """One request the bot made to TorchServe, as it arrived."""

    path: str
    headers: CIMultiDict[str]
    body: bytes
    status: int


class RecordingTorchServe:
    """A pass-through in front of the real TorchServe that records each request (path, headers,
    body) and answers with TorchServe's own status, body and headers."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.port = 0
        self.requests: list[Forwarded] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> RecordingTorchServe:
        ready = threading.Event()

        def serve() -> None:
            self._loop = asyncio.new_event_loop()
            runner = self._loop.run_until_complete(self._start())
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._session.close())
            self._loop.run_until_complete(runner.cleanup())
            self._loop.close()

        self._thread = threading.Thread(target=serve, name="torchserve-recorder", daemon=True)
        self._thread.start()
        assert ready.wait(10), "the recording pass-through did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _start(self) -> web.AppRunner:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300))
        app = web.Application(client_max_size=100 * 1024 * 1024)
        app.router.add_route("*", "/{path:.*}", self._forward)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return runner

    async def _forward(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with self._session.request(request.method, self.upstream + request.path_qs, data=body,
                                         headers=headers) as upstream:
            answer = await upstream.read()
            status = upstream.status
            kept = {k: v for k, v in upstream.headers.items() if k.lower() in ("content-type", "retry-after")}
        with self._lock:
            self.requests.append(Forwarded(request.path, CIMultiDict(request.headers), body, status))
        return web.Response(body=answer, status=status, headers=kept)

    def since(self, index: int) -> list[Forwarded]:
        with self._lock:
            return self.requests[index:]


@pytest.fixture(scope="module")
def recorded(torchserve, tmp_path_factory):
    """(stand-in, recorder, bot): a bot whose TorchServe calls are recorded."""
    work = tmp_path_factory.mktemp("bot-recorded")
    with TelegramStub() as server, RecordingTorchServe(torchserve.inference_url) as recorder:
        process = BotProcess(server.base_url, server.token, recorder.url, work / "state", work / "bot.log")
        process.start()
        try:
            process.wait_metrics()
            yield server, recorder, process
        finally:
            process.stop()


def test_vividness_setting_is_sent_to_the_colour_endpoints_only(recorded):
    stub, recorder, bot = recorded
    user = User(5001)
    menu = open_settings(stub, user)
    assert "Colours (colourise and restore): default." in menu.params["text"]
    marked = [b["callback_data"] for b in buttons_of(menu) if b["text"].startswith(("• 🌿", "• ⚖", "• 🌈"))]
    assert marked == ["viv:default"]  # the default for a new user
    grey = encode(photo(40, 32, seed=40).convert("L"), "JPEG", quality=92)

    def run(mode: str, data: bytes) -> tuple[Forwarded, bytes]:
        """One photo in ``mode``: the request TorchServe got and the PNG the user got."""
        choose_mode(stub, user, mode)
        seen, done = len(recorder.requests), len(stub.calls_of("sendDocument", user.id))
        stub.user_photo(user, data, 40, 32)
        _, documents = results_for(stub, user, done + 1)
        (request,) = recorder.since(seen)
        assert request.status == 200 and request.body == data
        return request, documents[-1].upload("document")[1]

    default_request, default_png = run("colorize", grey)
    assert "X-Vividness" not in default_request.headers

    choose_vividness(stub, user, "vivid")
    stub.wait_for(lambda: any("Colours (colourise and restore): vivid." in t for t in stub.texts_to(user.id)), 20,
                  "the settings message edited to show it")
    answers = [c.params.get("text", "") for c in stub.calls_of("answerCallbackQuery")]
    assert "Colours: vivid." in answers
    again = open_settings(stub, user)  # kept in the user's state
    assert "Colours (colourise and restore): vivid." in again.params["text"]
    marked = [b["callback_data"] for b in buttons_of(again) if b["text"].startswith("•")]
    assert [data for data in marked if data.startswith("viv:")] == ["viv:vivid"]

    vivid_request, vivid_png = run("colorize", grey)
    assert vivid_request.path == "/predictions/colorize" and vivid_request.headers.get("X-Vividness") == "1"
    assert vivid_png != default_png  # the server honoured it
    restore_request, restore_png = run("restore", grey)
    assert restore_request.path == "/wfpredict/restore" and restore_request.headers.get("X-Vividness") == "1"
    assert "X-Repair-Strength" not in restore_request.headers  # full strength: the server's default
    assert size_of(restore_png) == (80, 64)
    for mode, path in (("x2", "/predictions/sr_x2"), ("x4", "/predictions/sr_x4")):
        sr_request, _ = run(mode, encode(photo(40, 32, seed=41), "JPEG"))
        assert sr_request.path == path and "X-Vividness" not in sr_request.headers, mode

    choose_vividness(stub, user, "natural")
    natural_request, natural_png = run("colorize", grey)
    assert natural_request.headers.get("X-Vividness") == "0"
    assert natural_png not in (default_png, vivid_png)
    choose_vividness(stub, user, "default")
    back_request, back_png = run("colorize", grey)
    assert "X-Vividness" not in back_request.headers and back_png == default_png
    assert "Traceback" not in bot.log()


def test_vividness_setting_in_russian(recorded):
    stub, _, _ = recorded
    user = User(5002, language_code="ru")
    menu = open_settings(stub, user)
    assert "Цвета (раскраска и восстановление): обычные." in menu.params["text"]
    labels = [b["text"] for b in buttons_of(menu)]
    assert any("Яркие" in label for label in labels) and any("Естественные" in label for label in labels)
    choose_vividness(stub, user, "natural")
    stub.wait_for(lambda: any("естественные" in t for t in stub.texts_to(user.id)), 20, "the edited settings")


def test_repair_strength_is_sent_to_the_repairing_endpoints_only(recorded):
    stub, recorder, bot = recorded
    user = User(5201)
    menu = open_settings(stub, user)
    assert "Repair strength (repair and restore): full (default)." in menu.params["text"]
    marked = [b["callback_data"] for b in buttons_of(menu) if b["text"].startswith("•")]
    assert marked == ["viv:default", "rep:full", "sri:clean"]  # the defaults for a new user
    grey = encode(photo(40, 32, seed=52).convert("L"), "JPEG", quality=70)

    def run(mode: str, data: bytes) -> tuple[Forwarded, bytes]:
        """One photo in ``mode``: the request TorchServe got and the PNG the user got."""
        choose_mode(stub, user, mode)
        seen, done = len(recorder.requests), len(stub.calls_of("sendDocument", user.id))
        stub.user_photo(user, data, 40, 32)
        _, documents = results_for(stub, user, done + 1)
        (request,) = recorder.since(seen)
        assert request.status == 200 and request.body == data
        return request, documents[-1].upload("document")[1]

    full_request, full_png = run("repair", grey)
    assert full_request.path == "/predictions/repair" and "X-Repair-Strength" not in full_request.headers
    assert size_of(full_png) == (40, 32)

    choose_strength(stub, user, "light")
    stub.wait_for(lambda: any("Repair strength (repair and restore): light." in t for t in stub.texts_to(user.id)),
                  20, "the settings message edited to show it")
    assert "Repair strength: light." in [c.params.get("text", "") for c in stub.calls_of("answerCallbackQuery")]
    again = open_settings(stub, user)  # kept in the user's state
    marked = [b["callback_data"] for b in buttons_of(again) if b["text"].startswith("•")]
    assert marked == ["viv:default", "rep:light", "sri:clean"]

    light_request, light_png = run("repair", grey)
    assert light_request.headers.get("X-Repair-Strength") == "0.3" and "X-Vividness" not in light_request.headers
    assert size_of(light_png) == (40, 32) and light_png != full_png  # the server honoured it
    choose_vividness(stub, user, "vivid")
    restore_request, restore_png = run("restore", grey)
    assert restore_request.path == "/wfpredict/restore" and size_of(restore_png) == (80, 64)
    assert restore_request.headers.get("X-Repair-Strength") == "0.3" and restore_request.headers.get("X-Vividness") == "1"
    colorize_request, _ = run("colorize", grey)
    assert "X-Repair-Strength" not in colorize_request.headers and colorize_request.headers.get("X-Vividness") == "1"
    for mode, path in (("x2", "/predictions/sr_x2"), ("x4", "/predictions/sr_x4")):
        sr_request, _ = run(mode, encode(photo(40, 32, seed=53), "JPEG"))
        assert sr_request.path == path and "X-Repair-Strength" not in sr_request.headers, mode

    choose_strength(stub, user, "medium")
    medium_request, medium_png = run("repair", grey)
    assert medium_request.headers.get("X-Repair-Strength") == "0.6" and medium_png not in (light_png, full_png)
    choose_strength(stub, user, "full")
    back_request, back_png = run("repair", grey)
    assert "X-Repair-Strength" not in back_request.headers and back_png == full_png
    assert "Traceback" not in bot.log()


def test_repair_strength_setting_in_russian(recorded):
    stub, _, _ = recorded
    user = User(5202, language_code="ru")
    menu = open_settings(stub, user)
    assert "Сила ретуши (ретушь и восстановление): полная (по умолчанию)." in menu.params["text"]
    labels = [b["text"] for b in buttons_of(menu)]
    assert all(any(word in label for label in labels) for word in ("Слабая", "Средняя", "Полная"))
    choose_strength(stub, user, "medium")
    stub.wait_for(lambda: any("Сила ретуши (ретушь и восстановление): средняя." in t for t in stub.texts_to(user.id)),
                  20, "the edited settings")
    assert "Сила ретуши: средняя." in [c.params.get("text", "") for c in stub.calls_of("answerCallbackQuery")]


# -- the ×2 input setting (X-SR-Input) -----------------------------------------------------------


def test_sr_input_is_sent_to_the_x2_endpoints_only(recorded):
    stub, recorder, bot = recorded
    user = User(5401)
    menu = open_settings(stub, user)
    assert "Photos for ×2 (upscale ×2 and restore): sharp (scans, camera originals; default)." in menu.params["text"]
    marked = [b["callback_data"] for b in buttons_of(menu) if b["text"].startswith("•")]
    assert marked == ["viv:default", "rep:full", "sri:clean"]  # the defaults for a new user
    jpeg = encode(photo(40, 32, seed=60), "JPEG", quality=60)

    def run(mode: str) -> tuple[Forwarded, bytes]:
        """One photo in ``mode``: the request TorchServe got and the PNG the user got."""
        choose_mode(stub, user, mode)
        seen, done = len(recorder.requests), len(stub.calls_of("sendDocument", user.id))
        stub.user_photo(user, jpeg, 40, 32)
        _, documents = results_for(stub, user, done + 1)
        (request,) = recorder.since(seen)
        assert request.status == 200 and request.body == jpeg
        return request, documents[-1].upload("document")[1]

    clean_request, clean_png = run("x2")
    assert clean_request.path == "/predictions/sr_x2" and "X-SR-Input" not in clean_request.headers
    assert size_of(clean_png) == (80, 64)

    choose_sr_input(stub, user, "compressed")
    stub.wait_for(lambda: any("Photos for ×2 (upscale ×2 and restore): compressed (messenger and phone JPEGs)." in t
                              for t in stub.texts_to(user.id)), 20, "the settings message edited to show it")
    answers = [c.params.get("text", "") for c in stub.calls_of("answerCallbackQuery")]
    assert "Photos for ×2: compressed (messenger and phone JPEGs)." in answers
    again = open_settings(stub, user)  # kept in the user's state
    marked = [b["callback_data"] for b in buttons_of(again) if b["text"].startswith("•")]
    assert marked == ["viv:default", "rep:full", "sri:compressed"]

    compressed_request, compressed_png = run("x2")
    assert compressed_request.path == "/predictions/sr_x2"
    assert compressed_request.headers.get("X-SR-Input") == "compressed"
    assert size_of(compressed_png) == (80, 64) and compressed_png != clean_png  # the other weights served
    restore_request, restore_png = run("restore")
    assert restore_request.path == "/wfpredict/restore" and size_of(restore_png) == (80, 64)
    assert restore_request.headers.get("X-SR-Input") == "compressed"
    assert "X-Repair-Strength" not in restore_request.headers and "X-Vividness" not in restore_request.headers
    for mode, path in (("colorize", "/predictions/colorize"), ("repair", "/predictions/repair"),
                       ("x4", "/predictions/sr_x4")):
        other_request, _ = run(mode)
        assert other_request.path == path and "X-SR-Input" not in other_request.headers, mode

    choose_sr_input(stub, user, "clean")
    back_request, back_png = run("x2")
    assert "X-SR-Input" not in back_request.headers and back_png == clean_png
    assert "Traceback" not in bot.log()


def test_sr_input_setting_in_russian(recorded):
    stub, _, _ = recorded
    user = User(5402, language_code="ru")
    menu = open_settings(stub, user)
    assert ("Фото для ×2 (увеличение ×2 и восстановление): чёткие (сканы, оригиналы с камеры; по умолчанию)."
            in menu.params["text"])
    labels = [b["text"] for b in buttons_of(menu)]
    assert any("Чёткие оригиналы" in label for label in labels) and any("Сжатые JPEG" in label for label in labels)
    choose_sr_input(stub, user, "compressed")
    stub.wait_for(lambda: any("Фото для ×2 (увеличение ×2 и восстановление): сжатые (JPEG из мессенджеров и с телефона)."
                              in t for t in stub.texts_to(user.id)), 20, "the edited settings")
    assert "Фото для ×2: сжатые (JPEG из мессенджеров и с телефона)." in [
        c.params.get("text", "") for c in stub.calls_of("answerCallbackQuery")]


def test_a_resumed_job_keeps_its_repair_strength_and_sr_input(torchserve, tmp_path):
    """The settings travel with the job in the job store: a restore job accepted before a SIGKILL
    runs with the user's strength and ×2 input after the restart (the FSM memory is gone by then)."""
    with TelegramStub() as stub, RecordingTorchServe(torchserve.inference_url) as recorder:
        def start() -> BotProcess:
            process = BotProcess(stub.base_url, stub.token, recorder.url, tmp_path / "state",
                                 tmp_path / f"bot{len(started)}.log")
            started.append(process)
            process.start()
            process.wait_metrics()
            return process

        started: list[BotProcess] = []
        try:
            first = start()
            user = User(5301)
            choose_mode(stub, user, "restore")
            choose_strength(stub, user, "medium")
            stub.wait_for(lambda: any("medium." in t for t in stub.texts_to(user.id)), 20, "the strength chosen")
            choose_sr_input(stub, user, "compressed")
            stub.wait_for(lambda: any("restore): compressed" in t for t in stub.texts_to(user.id)), 20,
                          "the ×2 input chosen")
            release = stub.hold("file")
            stub.user_photo(user, encode(photo(48, 40, seed=54), "JPEG"), 48, 40)
            stub.wait_for(lambda: stub.held() == 1, 30, "the download to be held")
            first.kill()
            release()
            assert not recorder.requests
            restarted = start()
            _, documents = results_for(stub, user, 1)
            assert size_of(documents[0].upload("document")[1]) == (96, 80)
            (request,) = recorder.requests
            assert request.path == "/wfpredict/restore" and request.headers.get("X-Repair-Strength") == "0.6"
            assert request.headers.get("X-SR-Input") == "compressed"
            assert restarted.metric("bot_jobs_resumed_total") == 1
            # the new process forgot the user's settings (memory storage), the job did not
            shown = open_settings(stub, user).params["text"]
            assert "full (default)." in shown and "sharp (scans, camera originals; default)." in shown
        finally:
            for process in started:
                process.stop()


def test_buttons_under_messages_too_old_to_edit_are_answered(stub, bot):
    """Past 48 hours Telegram sends an InaccessibleMessage (date 0, no text, no edits): every
    button is answered, and the updated keyboard comes as a fresh message."""
    user = User(5101)

    def keyboards_sent() -> list:
        return [c for c in stub.calls_of("sendMessage", user.id) if "reply_markup" in c.params]

    def press_old(message: dict, data: str, fresh: bool = True) -> dict:
        answered, sent = len(stub.calls_of("answerCallbackQuery")), len(keyboards_sent())
        update = stub.user_presses(user, message, data, inaccessible=True)
        query_id = update["callback_query"]["id"]
        stub.wait_for(lambda: any(c.params.get("callback_query_id") == query_id
                                  for c in stub.calls_of("answerCallbackQuery")[answered:]), 20,
                      f"the answer to {data}")
        if fresh and data.startswith(("mode:", "cmp:", "viv:", "rep:", "sri:")):
            return stub.wait_for(lambda: len(keyboards_sent()) > sent and keyboards_sent()[-1], 20,
                                 f"a fresh keyboard after {data}").params
        return {}

    stub.user_text(user, "/mode")
    mode_menu = stub.wait_for(lambda: keyboards_sent(), 20, "the mode keyboard")[-1]
    fresh = press_old(stub.messages[(user.id, mode_menu.result["message_id"])], "mode:x4")
    assert fresh["text"] == "Mode: 🔎 Upscale ×4. Now send a photo."
    assert [b["text"] for row in fresh["reply_markup"]["inline_keyboard"] for b in row if b["text"].startswith("•")]

    settings_menu = open_settings(stub, user)
    old = stub.messages[(user.id, settings_menu.result["message_id"])]
    fresh = press_old(old, "cmp:1")
    assert "comparison: on" in fresh["text"]
    fresh = press_old(old, "viv:vivid")
    assert "comparison: on" in fresh["text"] and "Colours (colourise and restore): vivid." in fresh["text"]
    fresh = press_old(old, "rep:light")
    assert "Colours (colourise and restore): vivid." in fresh["text"] and "(repair and restore): light." in fresh["text"]
    press_old(old, "rep:off", fresh=False)  # not a strength this version offers: answered, ignored
    fresh = press_old(old, "sri:compressed")
    assert "(repair and restore): light." in fresh["text"] and "(upscale ×2 and restore): compressed" in fresh["text"]
    press_old(old, "sri:blurry", fresh=False)  # not an input this version offers: answered, ignored
    press_old(old, "old:button-from-an-older-version")
    # nothing tried to edit the old messages, and the choices were kept
    assert not [c for c in stub.calls if c.method == "editMessageText" and c.chat_id == user.id]
    now = open_settings(stub, user)
    assert "comparison: on" in now.params["text"] and "vivid." in now.params["text"] and "light." in now.params["text"]
    assert "(upscale ×2 and restore): compressed" in now.params["text"]
    assert "AttributeError" not in bot.log() and "InaccessibleMessage" not in bot.log()
    assert bot.proc.poll() is None
