"""Bot parts without servers: keyboards, texts in both languages, limits, queue, job store,
Telegram photo limits, secret redaction, settings, and the TorchServe client against a small
local HTTP server."""

from __future__ import annotations

import asyncio
import io
import logging
import string

import pytest
from aiohttp import web
from PIL import Image

from bot.config import TELEGRAM_DOWNLOAD_LIMIT, ConfigError, Settings, parse_user_ids
from bot.jobs import Job, JobItem, JobQueue, QueueFull, UserRateLimiter
from bot.keyboards import (
    CompareToggle,
    ModeChoice,
    SrInputChoice,
    StrengthChoice,
    VividnessChoice,
    modes_keyboard,
    settings_keyboard,
)
from bot.logs import REDACTED, RedactSecrets
from bot.modes import (
    DEFAULT_REPAIR_STRENGTH,
    DEFAULT_SR_INPUT,
    DEFAULT_VIVIDNESS,
    Mode,
    RepairStrength,
    SrInput,
    Vividness,
)
from bot.results import encode_photo, fits_photo_limits, photo_size, result_file_name, side_by_side
from bot.routers.images import looks_like_image
from bot.store import JobStore
from bot.texts import (
    _TEXTS,
    COMMANDS,
    LANGUAGES,
    MODE_NAMES,
    SR_INPUT_NAMES,
    STRENGTH_NAMES,
    VIVIDNESS_NAMES,
    help_text,
    image_error_text,
    language_of,
    settings_text,
    text,
)
from bot.torchserve import (
    TorchServeClient,
    TorchServeError,
    format_sr_input,
    format_strength,
    format_vividness,
    parse_error,
    sniff_image_type,
)
from restoration.image_io import MB, ImageError, Limits, check_dimensions
from serving.server import free_port

# -- modes, keyboards ----------------------------------------------------------------------------


def test_modes_map_to_endpoints():
    assert Mode.REPAIR.path == "/predictions/repair" and Mode.REPAIR.scale == 1  # same size out
    assert Mode.REPAIR.target == "repair"
    assert Mode.COLORIZE.path == "/predictions/colorize" and Mode.COLORIZE.scale == 1
    assert Mode.UPSCALE_X2.path == "/predictions/sr_x2" and Mode.UPSCALE_X2.scale == 2
    assert Mode.UPSCALE_X4.path == "/predictions/sr_x4" and Mode.UPSCALE_X4.scale == 4
    assert Mode.RESTORE.path == "/wfpredict/restore" and Mode.RESTORE.scale == 2


@pytest.mark.parametrize("lang", LANGUAGES)
def test_modes_keyboard_has_every_mode_and_marks_the_current(lang):
    kb = modes_keyboard(lang, current=Mode.UPSCALE_X4)
    buttons = [b for row in kb.inline_keyboard for b in row]
    assert len(buttons) == len(Mode) and all(len(row) <= 2 for row in kb.inline_keyboard)
    chosen = [ModeChoice.unpack(b.callback_data).mode for b in buttons]
    assert chosen == list(Mode)
    marked = [b for b in buttons if b.text.startswith("•")]
    assert len(marked) == 1 and ModeChoice.unpack(marked[0].callback_data).mode == Mode.UPSCALE_X4
    assert all(len(b.callback_data.encode()) <= 64 for b in buttons)  # Telegram's callback_data limit
    # repair and colourise, ×2 and ×4, then restore (the default, three steps) on a row of its own
    rows = [[ModeChoice.unpack(b.callback_data).mode for b in row] for row in kb.inline_keyboard]
    assert rows == [[Mode.REPAIR, Mode.COLORIZE], [Mode.UPSCALE_X2, Mode.UPSCALE_X4], [Mode.RESTORE]]


def test_callback_data_round_trip_and_rejects_unknown_mode():
    packed = ModeChoice(mode=Mode.RESTORE).pack()
    assert packed == "mode:restore" and ModeChoice.unpack(packed).mode is Mode.RESTORE
    with pytest.raises(ValueError):
        ModeChoice.unpack("mode:delete_everything")


@pytest.mark.parametrize("compare", [True, False])
def test_settings_keyboard_switches_to_the_other_state(compare):
    (button,), _, _, _ = settings_keyboard("en", compare).inline_keyboard
    assert CompareToggle.unpack(button.callback_data).on is (not compare)


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("current", list(Vividness))
def test_settings_keyboard_offers_the_colour_settings_and_marks_the_current(lang, current):
    _, row, _, _ = settings_keyboard(lang, False, current).inline_keyboard
    assert [VividnessChoice.unpack(b.callback_data).vividness for b in row] == [
        Vividness.NATURAL, Vividness.DEFAULT, Vividness.VIVID]
    marked = [VividnessChoice.unpack(b.callback_data).vividness for b in row if b.text.startswith("•")]
    assert marked == [current]
    assert all(len(b.callback_data.encode()) <= 64 for b in row)
    # without a setting: the default is marked
    _, row, _, _ = settings_keyboard(lang, True).inline_keyboard
    assert [b.callback_data for b in row if b.text.startswith("•")] == ["viv:default"]


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("current", list(RepairStrength))
def test_settings_keyboard_offers_the_repair_strengths_and_marks_the_current(lang, current):
    _, colours, row, _ = settings_keyboard(lang, False, Vividness.VIVID, current).inline_keyboard
    assert [StrengthChoice.unpack(b.callback_data).strength for b in row] == [
        RepairStrength.LIGHT, RepairStrength.MEDIUM, RepairStrength.FULL]
    assert [b.text.startswith("•") for b in row] == [level == current for level in RepairStrength]
    assert [b.callback_data for b in colours if b.text.startswith("•")] == ["viv:vivid"]  # each row its own
    assert all(len(b.callback_data.encode()) <= 64 for b in row)
    _, _, row, _ = settings_keyboard(lang, True).inline_keyboard
    assert [b.callback_data for b in row if b.text.startswith("•")] == ["rep:full"]


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("current", list(SrInput))
def test_settings_keyboard_offers_the_sr_inputs_and_marks_the_current(lang, current):
    keyboard = settings_keyboard(lang, False, Vividness.VIVID, RepairStrength.LIGHT, current).inline_keyboard
    _, colours, strengths, row = keyboard
    assert [SrInputChoice.unpack(b.callback_data).sr_input for b in row] == [SrInput.CLEAN, SrInput.COMPRESSED]
    assert [b.text.startswith("•") for b in row] == [kind == current for kind in SrInput]
    # each row its own mark
    assert [b.callback_data for b in colours if b.text.startswith("•")] == ["viv:vivid"]
    assert [b.callback_data for b in strengths if b.text.startswith("•")] == ["rep:light"]
    assert all(len(b.callback_data.encode()) <= 64 for b in row)
    assert all(len(b.text) <= 24 for b in row)  # two to a row on a phone without being cut
    *_, row = settings_keyboard(lang, True).inline_keyboard
    assert [b.callback_data for b in row if b.text.startswith("•")] == ["sri:clean"]


def test_sr_input_values_sent_and_parsed():
    # sharp originals send nothing: the default ×2 weights are the ones for clean inputs
    assert SrInput.CLEAN.value_sent is None and SrInput.COMPRESSED.value_sent == "compressed"
    assert DEFAULT_SR_INPUT is SrInput.CLEAN
    assert SrInputChoice(sr_input=SrInput.COMPRESSED).pack() == "sri:compressed"
    assert SrInputChoice.unpack("sri:clean").sr_input is SrInput.CLEAN
    with pytest.raises(ValueError):
        SrInputChoice.unpack("sri:blurry")
    assert SrInput.parse("compressed") is SrInput.COMPRESSED
    for junk in (None, "", "blurry", 1, ["compressed"]):
        assert SrInput.parse(junk) is SrInput.CLEAN
    # the modes that run the ×2 model; ×4 has one model and ignores the setting
    assert [m for m in Mode if m.upscales_x2] == [Mode.UPSCALE_X2, Mode.RESTORE]
    assert format_sr_input("compressed") == "compressed" and format_sr_input("clean") == "clean"
    for bad in ("", "Compressed", "blurry"):
        with pytest.raises(ValueError, match="sr_input"):
            format_sr_input(bad)


def test_repair_strength_values_sent_and_parsed():
    # no "off" (another mode does that); full sends nothing: the server's default is full strength
    assert RepairStrength.LIGHT.value_sent == 0.3 and RepairStrength.MEDIUM.value_sent == 0.6
    assert RepairStrength.FULL.value_sent is None and DEFAULT_REPAIR_STRENGTH is RepairStrength.FULL
    assert all(s.value_sent is None or 0 < s.value_sent < 1 for s in RepairStrength)
    assert StrengthChoice(strength=RepairStrength.LIGHT).pack() == "rep:light"
    with pytest.raises(ValueError):
        StrengthChoice.unpack("rep:off")
    assert RepairStrength.parse("medium") is RepairStrength.MEDIUM
    for junk in (None, "", "off", 0.5, ["light"]):
        assert RepairStrength.parse(junk) is RepairStrength.FULL
    assert [m for m in Mode if m.repairs] == [Mode.REPAIR, Mode.RESTORE]
    assert format_strength(0.3) == "0.3" and format_strength(1.0) == "1" and format_strength(0.0) == "0"
    for bad in (-0.1, 1.01, float("nan")):
        with pytest.raises(ValueError, match="repair strength"):
            format_strength(bad)


def test_vividness_values_sent_and_parsed():
    assert Vividness.NATURAL.value_sent == 0.0 and Vividness.VIVID.value_sent == 1.0
    assert Vividness.DEFAULT.value_sent is None and DEFAULT_VIVIDNESS is Vividness.DEFAULT
    assert VividnessChoice(vividness=Vividness.VIVID).pack() == "viv:vivid"
    with pytest.raises(ValueError):
        VividnessChoice.unpack("viv:blinding")
    assert Vividness.parse("natural") is Vividness.NATURAL
    for junk in (None, "", "extreme", 1, ["vivid"]):
        assert Vividness.parse(junk) is Vividness.DEFAULT
    assert [m for m in Mode if m.colours] == [Mode.COLORIZE, Mode.RESTORE]
    assert format_vividness(0.0) == "0" and format_vividness(1.0) == "1" and format_vividness(0.25) == "0.25"
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError):
            format_vividness(bad)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_settings_text_names_every_setting(lang):
    assert set(VIVIDNESS_NAMES[lang]) == set(Vividness) and set(STRENGTH_NAMES[lang]) == set(RepairStrength)
    assert set(SR_INPUT_NAMES[lang]) == set(SrInput)
    for vividness in Vividness:
        for strength in RepairStrength:
            for sr_input in SrInput:
                shown = settings_text(lang, True, vividness, strength, sr_input)
                assert VIVIDNESS_NAMES[lang][vividness][1] in shown and text(lang, "on") in shown
                assert STRENGTH_NAMES[lang][strength][1] in shown and SR_INPUT_NAMES[lang][sr_input][1] in shown
    assert len({label for label, _ in STRENGTH_NAMES[lang].values()}) == len(RepairStrength)
    assert len({label for label, _ in SR_INPUT_NAMES[lang].values()}) == len(SrInput)
    assert settings_text(lang, False, Vividness.DEFAULT, RepairStrength.FULL) == settings_text(
        lang, False, Vividness.DEFAULT, RepairStrength.FULL, SrInput.CLEAN)  # the default when not given


def test_settings_text_says_when_to_choose_compressed():
    en = settings_text("en", False, Vividness.DEFAULT, RepairStrength.FULL, SrInput.COMPRESSED)
    assert "Photos for ×2 (upscale ×2 and restore): compressed (messenger and phone JPEGs)." in en
    assert "heavily compressed" in en and "sharp originals" in en
    ru = settings_text("ru", False, Vividness.DEFAULT, RepairStrength.FULL, SrInput.CLEAN)
    assert "Фото для ×2 (увеличение ×2 и восстановление): чёткие (сканы, оригиналы с камеры; по умолчанию)." in ru
    assert "сильно сжатых" in ru and "чёткие оригиналы" in ru
    assert text("en", "sr_input_set", sr_input="x") == "Photos for ×2: x."
    assert text("ru", "sr_input_set", sr_input="x") == "Фото для ×2: x."
    assert "compressed" in dict(COMMANDS["en"])["settings"] and "сжатые" in dict(COMMANDS["ru"])["settings"]
    limits = Limits()
    assert "compressed JPEGs" in help_text("en", limits, 20 * MB) and "сжатые JPEG" in help_text("ru", limits, 20 * MB)


# -- texts ---------------------------------------------------------------------------------------


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def test_every_text_exists_in_both_languages_with_the_same_placeholders():
    for key, entry in _TEXTS.items():
        assert set(entry) == set(LANGUAGES), key
        assert _fields(entry["en"]) == _fields(entry["ru"]), key
        assert entry["en"] != entry["ru"] or key.startswith("caption"), f"{key} is not translated"
    for lang in LANGUAGES:
        assert set(MODE_NAMES[lang]) == set(Mode)
        assert set(VIVIDNESS_NAMES[lang]) == set(Vividness) and set(STRENGTH_NAMES[lang]) == set(RepairStrength)
        assert set(SR_INPUT_NAMES[lang]) == set(SrInput)
        assert [c for c, _ in COMMANDS[lang]] == [c for c, _ in COMMANDS["en"]]
    for names in (MODE_NAMES, VIVIDNESS_NAMES, STRENGTH_NAMES, SR_INPUT_NAMES):
        assert all(names["en"][k] != names["ru"][k] for k in names["en"]), names["ru"]


def test_texts_say_what_restore_and_repair_do():
    start_en, start_ru = text("en", "start", mode="x"), text("ru", "start", mode="x")
    assert all(word in start_en for word in ("repairs damage", "colourises", "×2"))
    assert all(word in start_ru for word in ("убирает дефекты", "раскрашивает", "в 2 раза"))
    limits = Limits()
    help_en, help_ru = help_text("en", limits, 20 * MB), help_text("ru", limits, 20 * MB)
    assert "• Repair —" in help_en and "• Restore — repair, colourise, then ×2." in help_en
    assert "• Ретушь —" in help_ru and "• Восстановить — ретушь, раскраска, затем ×2." in help_ru
    assert "repair" in MODE_NAMES["en"][Mode.RESTORE] and "ретушь" in MODE_NAMES["ru"][Mode.RESTORE]


def test_russian_texts_are_russian():
    assert any("а" <= ch <= "я" for ch in text("ru", "not_image"))
    assert not any("а" <= ch <= "я" for ch in text("en", "not_image"))


@pytest.mark.parametrize("code,lang", [("ru", "ru"), ("ru-RU", "ru"), ("uk", "en"), ("en", "en"), ("de", "en"),
                                       (None, "en"), ("", "en")])
def test_language_of(code, lang):
    assert language_of(code) == lang


@pytest.mark.parametrize("lang", LANGUAGES)
def test_help_quotes_the_limits_in_force(lang):
    limits = Limits(max_input_pixels=12_000_000, max_output_pixels=48_000_000)
    message = help_text(lang, limits, download_limit=20 * MB)
    assert "20" in message and "12" in message and "48" in message


@pytest.mark.parametrize("lang", LANGUAGES)
def test_image_errors_become_friendly_texts(lang):
    limits = Limits()
    with pytest.raises(ImageError) as info:
        check_dimensions(9000, 6000, limits)
    message = image_error_text(lang, info.value.kind, info.value.message, limits, 20 * MB)
    assert "9000×6000" in message and "40" in message
    unknown = image_error_text(lang, "SomethingNew", "detail here", limits, 20 * MB)
    assert "detail here" in unknown


# -- limits and settings ------------------------------------------------------------------------


def test_download_limit_is_telegrams_or_the_services():
    s = Settings(token="1:x")
    assert s.download_limit == TELEGRAM_DOWNLOAD_LIMIT == 20 * MB  # the service takes 30 MB
    assert Settings(token="1:x", limits=Limits(max_bytes=5 * MB)).download_limit == 5 * MB


def test_settings_from_env():
    s = Settings.from_env({"TELEGRAM_BOT_TOKEN": "1:abc", "BOT_ALLOWED_USERS": "5, 7", "BOT_MAX_JOBS": "2",
                           "TORCHSERVE_URL": "http://127.0.0.1:9/", "TORCHSERVE_TOKEN": "k"})
    assert s.allowed_users == {5, 7} and s.max_jobs == 2 and s.torchserve_url == "http://127.0.0.1:9"
    assert s.torchserve_token == "k" and s.webhook_url is None and s.metrics_port == 9100
    with pytest.raises(ConfigError, match="TELEGRAM_BOT_TOKEN"):
        Settings.from_env({})
    with pytest.raises(ConfigError, match="BOT_MAX_JOBS"):
        Settings.from_env({"TELEGRAM_BOT_TOKEN": "1:abc", "BOT_MAX_JOBS": "many"})
    with pytest.raises(ConfigError, match="BOT_WEBHOOK_SECRET"):
        Settings.from_env({"TELEGRAM_BOT_TOKEN": "1:abc", "BOT_WEBHOOK_URL": "https://example.org/hook"})
    with pytest.raises(ConfigError, match="numeric"):
        parse_user_ids("12,alice")


def test_documents_that_look_like_images():
    from aiogram.types import Document

    def doc(name, mime):
        return Document(file_id="f", file_unique_id="u", file_name=name, mime_type=mime)

    assert looks_like_image(doc("scan.tiff", "application/octet-stream"))
    assert looks_like_image(doc("x", "image/webp"))
    assert looks_like_image(doc("IMG_0001.HEIC", "image/heic"))  # an iPhone photo sent as a file
    assert looks_like_image(doc("IMG_0001.HEIC", "application/octet-stream"))  # apps that do not know the type
    assert looks_like_image(doc("PXL_0001.avif", None))
    assert not looks_like_image(doc("report.pdf", "application/pdf"))


# -- Telegram photo limits, comparison ------------------------------------------------------------


def test_photo_size_respects_telegram_limits():
    assert photo_size(1200, 800) == (1200, 800)
    assert photo_size(6000, 4000) == (6000, 4000)  # fits: width + height = 10000
    assert photo_size(8000, 6000) == (2560, 1920)  # a preview at the size Telegram shows
    assert not fits_photo_limits(6000, 5000, 1000) and not fits_photo_limits(100, 100, 11 * 1024 * 1024)
    assert not fits_photo_limits(4200, 200, 1000) and fits_photo_limits(4000, 200, 1000)


def test_encode_photo_gives_a_jpeg_within_limits():
    small = Image.new("RGB", (300, 200), "navy")
    data, size = encode_photo(small)
    assert data.startswith(b"\xff\xd8") and size == (300, 200)
    # width + height over 10000: reduced to fit
    data, (w, h) = encode_photo(Image.new("RGB", (9000, 3000), "white"))
    assert (w, h) == (2560, 853) and fits_photo_limits(w, h, len(data))
    # too many bytes (a 150 kB cap stands in for the 10 MB one): reduced until it fits
    noisy = Image.effect_noise((900, 700), 90).convert("RGB")
    data, (w, h) = encode_photo(noisy, max_bytes=150_000)
    assert len(data) <= 150_000 and w < 900 and abs(w / h - 900 / 700) < 0.02
    data, (w, h) = encode_photo(Image.effect_noise((3000, 2500), 90).convert("RGB"), max_bytes=400_000)
    assert len(data) <= 400_000 and w < 2560
    with Image.open(io.BytesIO(data)) as back:
        assert back.size == (w, h)
    assert encode_photo(Image.new("RGB", (2100, 100))) is None  # 21:1 cannot be a photo


def test_side_by_side_scales_before_to_the_result_height():
    before, after = Image.new("RGB", (50, 40), "black"), Image.new("RGB", (100, 80), "red")
    pair = side_by_side(before, after, gap=8)
    assert pair.size == (100 + 8 + 100, 80)
    assert pair.getpixel((10, 10)) == (0, 0, 0) and pair.getpixel((150, 10)) == (255, 0, 0)


def test_result_file_name():
    assert result_file_name("holiday 1939.JPG", "restore", "image/png") == "holiday_1939_restore.png"
    assert result_file_name(None, "x4", "image/jpeg") == "photo_x4.jpg"
    assert result_file_name("../../etc/passwd", "x2", "image/png") == "passwd_x2.png"


# -- rate limit and queue ------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_rate_limiter_bucket():
    clock = FakeClock()
    rate = UserRateLimiter(burst=3, per_minute=6, clock=clock)  # one image per 10 s after the burst
    assert rate.wait_time(1, 3) == 0
    rate.take(1, 3)
    assert rate.wait_time(1, 1) == pytest.approx(10.0)
    assert rate.wait_time(2, 1) == 0  # per user
    clock.now = 10.0
    assert rate.wait_time(1, 1) == 0
    assert rate.wait_time(1, 10) == pytest.approx(20.0)  # capped at the burst, not refused


def _job(user: int, n: int = 1, mid: int = 1) -> Job:
    items = [JobItem(file_id=f"f{user}-{mid}-{i}", message_id=mid + i, kind="photo") for i in range(n)]
    return Job(user_id=user, chat_id=user, source_message_id=mid, lang="en", mode=Mode.UPSCALE_X2, compare=False,
               items=items)


def test_queue_limits_and_positions():
    async def scenario():
        started: list[tuple[int, int]] = []
        release: dict[int, asyncio.Event] = {}
        positions: list[tuple[int, int, int]] = []

        async def run_job(job):
            started.append((job.user_id, job.source_message_id))
            release[job.source_message_id] = asyncio.Event()
            await release[job.source_message_id].wait()

        async def on_position(job, pos):
            positions.append((job.user_id, job.source_message_id, pos))

        queue = JobQueue(run_job, max_in_flight=2, user_max_queued=2, rate=UserRateLimiter(100, 6000),
                         on_position=on_position)
        queue.start()
        a1, a2, b1, c1 = _job(1, mid=10), _job(1, mid=20), _job(2, mid=30), _job(3, mid=40)
        for job in (a1, a2, b1, c1):
            queue.submit(job)
        await asyncio.sleep(0.05)
        # two slots; user 1 only one at a time, so b1 starts beside a1 and a2 waits
        assert started == [(1, 10), (2, 30)]
        assert [j.source_message_id for j in queue.waiting] == [20, 40]
        assert (1, 20, 1) in positions and (3, 40, 2) in positions
        with pytest.raises(QueueFull):
            queue.submit(_job(1, mid=50))
            queue.submit(_job(1, mid=60))
            queue.check_room(1)
        release[10].set()
        await asyncio.sleep(0.05)
        assert started[2] == (1, 20)  # user 1's next job goes first once a1 is done
        assert (3, 40, 1) in positions  # c1 moved up
        cancelled = queue.cancel_user(1)
        assert {j.source_message_id for j in cancelled} == {50, 60}
        release[30].set()
        await asyncio.sleep(0.05)
        assert started[3] == (3, 40)
        left = await queue.close(timeout=0.1)  # 20 and 40 still running: cancelled at the deadline
        assert {j.source_message_id for j in left} == {20, 40}

    asyncio.run(scenario())


def test_queue_rate_limit_delays_but_does_not_drop():
    async def scenario():
        started = []

        async def run_job(job):
            started.append(asyncio.get_running_loop().time())

        # 2 images at once, then one every 0.3 s
        queue = JobQueue(run_job, max_in_flight=4, user_max_queued=10, rate=UserRateLimiter(2, 200))
        queue.start()
        for mid in range(4):
            queue.submit(_job(7, mid=mid * 10))
        await asyncio.sleep(1.0)
        await queue.close(1)
        assert len(started) == 4
        gaps = [b - a for a, b in zip(started, started[1:], strict=False)]
        assert gaps[0] < 0.1 and all(g > 0.2 for g in gaps[1:]), gaps

    asyncio.run(scenario())


# -- job store -------------------------------------------------------------------------------


def test_job_store_round_trip_and_duplicates(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite3")
    job = _job(5, n=3, mid=100)
    job.items[1].file_name = "b.png"
    assert store.add(job) and job.id is not None
    assert not store.add(_job(5, n=1, mid=100))  # the same message delivered twice
    store.set_status_message(job.id, 777)
    store.advance(job.id, 2)
    store.close()

    reopened = JobStore(tmp_path / "jobs.sqlite3")  # as after a restart
    (back,) = reopened.unfinished()
    assert back.id == job.id and back.done == 2 and back.remaining == 1 and back.status_message_id == 777
    assert back.items[1].file_name == "b.png" and back.mode is Mode.UPSCALE_X2 and back.resumed
    assert back.vividness is Vividness.DEFAULT and back.repair_strength is RepairStrength.FULL
    assert back.sr_input is SrInput.CLEAN
    reopened.finish(job.id, "ok")
    assert reopened.unfinished() == [] and reopened.counts() == {"finished": 1}
    assert reopened.prune(older_than_s=-1) == 1
    vivid = _job(6, mid=200)
    vivid.mode, vivid.vividness, vivid.repair_strength = Mode.REPAIR, Vividness.VIVID, RepairStrength.LIGHT
    vivid.sr_input = SrInput.COMPRESSED
    assert reopened.add(vivid)
    (back,) = reopened.unfinished()
    assert back.id == vivid.id and back.vividness is Vividness.VIVID and back.repair_strength is RepairStrength.LIGHT
    assert back.mode is Mode.REPAIR and back.sr_input is SrInput.COMPRESSED


# The jobs table as the bot created it before the colour setting existed (nor the repair strength).
OLD_SCHEMA = """
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, user_id INTEGER NOT NULL, chat_id INTEGER NOT NULL,
    source_message_id INTEGER NOT NULL, lang TEXT NOT NULL, mode TEXT NOT NULL, compare INTEGER NOT NULL,
    items TEXT NOT NULL, done INTEGER NOT NULL DEFAULT 0, status_message_id INTEGER,
    state TEXT NOT NULL DEFAULT 'queued', outcome TEXT, created_at REAL NOT NULL, updated_at REAL NOT NULL,
    UNIQUE (chat_id, source_message_id)
);
CREATE INDEX jobs_state ON jobs (state, id);
"""


def test_job_store_from_before_the_colour_setting_still_loads(tmp_path):
    import json
    import sqlite3

    path = tmp_path / "jobs.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(OLD_SCHEMA)
        items = json.dumps([{"file_id": "f1", "message_id": 10, "kind": "photo"}])
        db.execute("INSERT INTO jobs (user_id, chat_id, source_message_id, lang, mode, compare, items, created_at,"
                   " updated_at) VALUES (7, 7, 10, 'ru', 'colorize', 1, ?, 1.0, 1.0)", (items,))
    db.close()
    store = JobStore(path)  # as the new bot starting on the old pod's volume
    (old,) = store.unfinished()
    assert old.mode is Mode.COLORIZE and old.compare and old.lang == "ru" and old.items[0].file_id == "f1"
    assert old.vividness is Vividness.DEFAULT and old.repair_strength is RepairStrength.FULL and old.resumed
    assert old.sr_input is SrInput.CLEAN
    newer = _job(8, mid=20)
    newer.vividness, newer.repair_strength = Vividness.NATURAL, RepairStrength.MEDIUM
    assert store.add(newer)
    assert [j.vividness for j in store.unfinished()] == [Vividness.DEFAULT, Vividness.NATURAL]
    assert [j.repair_strength for j in store.unfinished()] == [RepairStrength.FULL, RepairStrength.MEDIUM]
    store.close()
    again = JobStore(path).unfinished()  # no second migration needed
    assert again[1].vividness is Vividness.NATURAL and again[1].repair_strength is RepairStrength.MEDIUM


# The jobs table of the bot that had the colour setting but not the repair strength.
VIVIDNESS_SCHEMA = OLD_SCHEMA.replace("items TEXT NOT NULL,", "items TEXT NOT NULL, vividness TEXT NOT NULL DEFAULT 'default',")


def test_job_store_from_before_the_repair_strength_still_loads(tmp_path):
    import json
    import sqlite3

    path = tmp_path / "jobs.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(VIVIDNESS_SCHEMA)
        items = json.dumps([{"file_id": "f1", "message_id": 10, "kind": "photo"}])
        db.execute("INSERT INTO jobs (user_id, chat_id, source_message_id, lang, mode, compare, items, vividness,"
                   " created_at, updated_at) VALUES (7, 7, 10, 'en', 'restore', 0, ?, 'vivid', 1.0, 1.0)", (items,))
    db.close()
    store = JobStore(path)
    columns = [row[1] for row in store._db.execute("PRAGMA table_info(jobs)")]
    assert columns.count("repair_strength") == 1
    (old,) = store.unfinished()
    assert old.mode is Mode.RESTORE and old.vividness is Vividness.VIVID
    assert old.repair_strength is RepairStrength.FULL  # the old bot sent no strength: the server's full one
    assert old.sr_input is SrInput.CLEAN
    store.close()


# The jobs table of the bot that had the colour setting and the repair strength but not the ×2 input.
STRENGTH_SCHEMA = VIVIDNESS_SCHEMA.replace("vividness TEXT NOT NULL DEFAULT 'default',",
                                           "vividness TEXT NOT NULL DEFAULT 'default', "
                                           "repair_strength TEXT NOT NULL DEFAULT 'full',")


def test_job_store_from_before_the_sr_input_still_loads(tmp_path):
    import json
    import sqlite3

    from bot.store import ADDED_COLUMNS

    assert ADDED_COLUMNS["sr_input"] == "TEXT NOT NULL DEFAULT 'clean'"
    path = tmp_path / "jobs.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(STRENGTH_SCHEMA)
        items = json.dumps([{"file_id": "f1", "message_id": 10, "kind": "photo"}])
        db.execute("INSERT INTO jobs (user_id, chat_id, source_message_id, lang, mode, compare, items, vividness,"
                   " repair_strength, created_at, updated_at) VALUES (7, 7, 10, 'en', 'restore', 0, ?, 'vivid',"
                   " 'medium', 1.0, 1.0)", (items,))
    db.close()
    store = JobStore(path)  # as the new bot starting on the old pod's volume
    columns = [row[1] for row in store._db.execute("PRAGMA table_info(jobs)")]
    assert columns.count("sr_input") == 1 and columns.count("repair_strength") == 1
    (old,) = store.unfinished()
    assert old.mode is Mode.RESTORE and old.vividness is Vividness.VIVID
    assert old.repair_strength is RepairStrength.MEDIUM
    assert old.sr_input is SrInput.CLEAN  # the old bot sent no X-SR-Input: the default ×2 weights
    newer = _job(8, mid=20)
    newer.sr_input = SrInput.COMPRESSED
    assert store.add(newer)
    store.close()
    again = JobStore(path)  # no second migration needed
    assert [j.sr_input for j in again.unfinished()] == [SrInput.CLEAN, SrInput.COMPRESSED]
    # a value this version does not know (written by a newer bot) resumes with the default
    again._db.execute("UPDATE jobs SET sr_input = 'blurry' WHERE source_message_id = 20")
    assert [j.sr_input for j in again.unfinished()] == [SrInput.CLEAN, SrInput.CLEAN]
    again.close()


# -- secrets in logs -----------------------------------------------------------------------------


def test_redaction_covers_messages_arguments_and_tracebacks():
    token = "123456:ABCdef-SECRET_value"
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(self.format(record))

    handler = Keep()
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.addFilter(RedactSecrets([token, None]))
    logger = logging.getLogger("test.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("GET http://127.0.0.1/file/bot%s/photos/1.jpg failed", token)
        logger.warning("only the half: %s", token.split(":")[1])
        try:
            raise RuntimeError(f"ClientResponseError for /bot{token}/sendPhoto")
        except RuntimeError:
            logger.exception("send failed")
    finally:
        logger.removeHandler(handler)
    joined = "\n".join(records)
    assert "SECRET" not in joined
    assert joined.count(REDACTED) == 3


# -- TorchServe client -------------------------------------------------------------------------


def test_sniff_and_parse_error():
    assert sniff_image_type(b"\x89PNG\r\n\x1a\n....") == "image/png"
    assert sniff_image_type(b"\xff\xd8\xff\xe0") == "image/jpeg"
    assert sniff_image_type(b'{"code": 500}') is None
    err = parse_error(413, b'{"code": 413, "type": "TooManyPixels", "message": "too big"}')
    assert err.is_client_error and err.kind == "TooManyPixels" and err.message == "too big"
    forwarded = parse_error(500, b'{"code": 415, "type": "UnsupportedMediaType", "message": "nope"}')
    assert forwarded.status == 415 and forwarded.is_client_error
    assert not parse_error(500, b"<html>oops</html>").is_client_error
    bad_key = parse_error(400, b'{"code": 400, "type": "InvalidKeyException", "message": "Token Authorization '
                               b'failed. Token either incorrect, expired, or not provided correctly"}')
    assert bad_key.is_auth_error and not bad_key.is_client_error  # the bot's fault, not the image's


def _png(w: int = 8, h: int = 6) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (w, h), "white").save(out, "PNG")
    return out.getvalue()


def test_client_retries_503_sends_token_and_sniffs_workflow_replies():
    seen = []

    async def predict(request: web.Request) -> web.Response:
        seen.append((request.path, request.headers.get("Authorization"), await request.read()))
        if len(seen) <= 2:
            return web.json_response({"code": 503, "type": "ServiceUnavailable", "message": "busy"}, status=503,
                                     headers={"Retry-After": "0"})
        # like the workflow endpoint: PNG bytes under a JSON content type
        return web.Response(body=_png(), content_type="application/json")

    async def scenario():
        app = web.Application()
        app.router.add_post("/wfpredict/restore", predict)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            async with TorchServeClient(f"http://127.0.0.1:{port}", token="inference-key", retries=3,
                                        backoff=0.01) as client:
                result = await client.predict("/wfpredict/restore", b"image-bytes")
        finally:
            await runner.cleanup()
        return result

    result = asyncio.run(scenario())
    assert result.media_type == "image/png" and result.data.startswith(b"\x89PNG")
    assert len(seen) == 3 and all(s == ("/wfpredict/restore", "Bearer inference-key", b"image-bytes") for s in seen)


def test_client_sends_vividness_to_the_colour_endpoints_only():
    seen: list[tuple[str, str | None]] = []

    async def predict(request: web.Request) -> web.Response:
        seen.append((request.path, request.headers.get("X-Vividness")))
        return web.Response(body=_png(), content_type="image/png")

    async def scenario():
        app = web.Application()
        for mode in Mode:
            app.router.add_post(mode.path, predict)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            async with TorchServeClient(f"http://127.0.0.1:{port}", retries=0) as client:
                for mode in Mode:
                    for vividness in Vividness:
                        await client.predict(mode.path, b"x", target=mode.target, vividness=vividness.value_sent)
        finally:
            await runner.cleanup()

    asyncio.run(scenario())
    expected = []
    for mode in Mode:
        for vividness in Vividness:
            value = {Vividness.NATURAL: "0", Vividness.VIVID: "1"}.get(vividness) if mode.colours else None
            expected.append((mode.path, value))
    assert seen == expected
    assert ("/predictions/colorize", "1") in seen and ("/wfpredict/restore", "0") in seen
    assert all(value is None for path, value in seen if "/sr_" in path)


def test_client_sends_the_repair_strength_to_the_repairing_endpoints_only():
    seen: list[tuple[str, str | None, str | None]] = []

    async def predict(request: web.Request) -> web.Response:
        seen.append((request.path, request.headers.get("X-Repair-Strength"), request.headers.get("X-Vividness")))
        return web.Response(body=_png(), content_type="image/png")

    async def scenario():
        app = web.Application()
        for mode in Mode:
            app.router.add_post(mode.path, predict)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            async with TorchServeClient(f"http://127.0.0.1:{port}", retries=0) as client:
                for mode in Mode:
                    for strength in RepairStrength:
                        await client.predict(mode.path, b"x", target=mode.target, strength=strength.value_sent)
        finally:
            await runner.cleanup()

    asyncio.run(scenario())
    expected = []
    for mode in Mode:
        for strength in RepairStrength:
            value = {RepairStrength.LIGHT: "0.3", RepairStrength.MEDIUM: "0.6"}.get(strength) if mode.repairs else None
            expected.append((mode.path, value, None))
    assert seen == expected
    assert ("/predictions/repair", "0.3", None) in seen and ("/wfpredict/restore", "0.6", None) in seen
    assert all(strength is None for path, strength, _ in seen if path not in ("/predictions/repair",
                                                                               "/wfpredict/restore"))


def test_client_sends_the_sr_input_to_the_x2_endpoints_only():
    seen: list[tuple[str, str | None, str | None, str | None]] = []

    async def predict(request: web.Request) -> web.Response:
        seen.append((request.path, request.headers.get("X-SR-Input"), request.headers.get("X-Repair-Strength"),
                     request.headers.get("X-Vividness")))
        return web.Response(body=_png(), content_type="image/png")

    async def scenario():
        app = web.Application()
        for mode in Mode:
            app.router.add_post(mode.path, predict)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            async with TorchServeClient(f"http://127.0.0.1:{port}", retries=0) as client:
                for mode in Mode:
                    for sr_input in SrInput:
                        await client.predict(mode.path, b"x", target=mode.target, sr_input=sr_input.value_sent)
                with pytest.raises(ValueError, match="sr_input"):
                    await client.predict("/predictions/sr_x2", b"x", sr_input="blurry")
        finally:
            await runner.cleanup()

    asyncio.run(scenario())
    expected = []
    for mode in Mode:
        for sr_input in SrInput:
            value = "compressed" if sr_input is SrInput.COMPRESSED and mode.upscales_x2 else None
            expected.append((mode.path, value, None, None))
    assert seen == expected
    assert [path for path, value, _, _ in seen if value] == ["/predictions/sr_x2", "/wfpredict/restore"]


def test_job_runner_passes_the_jobs_vividness_for_colour_modes_only():
    from bot.processing import JobRunner

    sent: list[tuple[str, float | None, float | None, str | None]] = []

    class FakeTorchServe:
        async def predict(self, path, data, target="", vividness=None, strength=None, sr_input=None):
            sent.append((path, vividness, strength, sr_input))
            raise TorchServeError(415, "UnsupportedMediaType", "stop here")

    class FakeBot:
        async def send_chat_action(self, *args, **kwargs):
            return True

        async def send_message(self, *args, **kwargs):
            return None

    png = _png(16, 12)

    async def fake_download(bot, file_id, limit, attempts=3):
        return png

    async def scenario():
        import bot.processing as processing

        original = processing.download
        processing.download = fake_download
        try:
            runner = JobRunner(FakeBot(), FakeTorchServe(), None, Settings(token="1:x"))
            for mode in Mode:
                job = _job(9, mid=300)
                job.mode, job.vividness, job.repair_strength = mode, Vividness.VIVID, RepairStrength.LIGHT
                job.sr_input = SrInput.COMPRESSED
                assert await runner.process_item(job, job.items[0]) == "refused"
        finally:
            processing.download = original

    asyncio.run(scenario())
    assert sent == [(m.path, 1.0 if m.colours else None, 0.3 if m.repairs else None,
                     "compressed" if m.upscales_x2 else None) for m in Mode]
    assert ("/predictions/repair", None, 0.3, None) in sent and ("/wfpredict/restore", 1.0, 0.3, "compressed") in sent
    # the ×2 input goes with the x2 mode and restore only: never with colourise, repair or ×4
    assert [path for path, _, _, sr_input in sent if sr_input] == ["/predictions/sr_x2", "/wfpredict/restore"]


def test_a_button_under_an_inaccessible_message_gets_a_fresh_message():
    from aiogram.types import CallbackQuery, InaccessibleMessage

    from bot.routers.commands import show_in_place

    sent = []

    class FakeBot:
        async def send_message(self, chat_id, message_text, reply_markup=None):
            sent.append((chat_id, message_text, reply_markup))

    query = CallbackQuery.model_validate({
        "id": "1", "chat_instance": "77", "data": "viv:vivid",
        "from": {"id": 77, "is_bot": False, "first_name": "A"},
        "message": {"message_id": 5, "date": 0, "chat": {"id": 77, "type": "private"}},
    })
    assert isinstance(query.message, InaccessibleMessage) and not hasattr(query.message, "edit_text")
    markup = settings_keyboard("en", False, Vividness.VIVID)
    asyncio.run(show_in_place(query, FakeBot(), "settings", markup))
    assert sent == [(77, "settings", markup)]


def test_client_gives_up_when_torchserve_is_down_and_does_not_retry_4xx():
    calls = []

    async def refuse(request: web.Request) -> web.Response:
        calls.append(1)
        return web.json_response({"code": 415, "type": "UnsupportedMediaType", "message": "not an image"},
                                 status=415)

    async def scenario():
        port = free_port()  # nobody listens: connection refused
        async with TorchServeClient(f"http://127.0.0.1:{port}", retries=2, backoff=0.01) as client:
            with pytest.raises(TorchServeError) as down:
                await client.predict("/predictions/sr_x2", b"x")
        app = web.Application()
        app.router.add_post("/predictions/sr_x2", refuse)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            async with TorchServeClient(f"http://127.0.0.1:{port}", retries=3, backoff=0.01) as client:
                with pytest.raises(TorchServeError) as refused:
                    await client.predict("/predictions/sr_x2", b"x")
        finally:
            await runner.cleanup()
        return down.value, refused.value

    down, refused = asyncio.run(scenario())
    assert down.status == 0 and down.kind == "Unavailable" and not down.is_client_error
    assert refused.status == 415 and refused.kind == "UnsupportedMediaType" and calls == [1]


def test_render_result_makes_photo_preview_and_comparison():
    from bot.processing import BEFORE_MAX_SIDE, _check, render_result

    big = encode_png(Image.new("RGB", (9000, 3000), "white"))
    rendered = render_result(big, None)
    assert rendered.size == (9000, 3000) and rendered.photo_size == (2560, 853) and rendered.comparison is None
    small = encode_png(Image.new("RGB", (64, 48), "red"))
    rendered = render_result(small, Image.new("RGB", (32, 24), "black"))
    assert rendered.photo_size == (64, 48) and size_of_bytes(rendered.comparison) == (64 + 8 + 64, 48)
    rendered = render_result(encode_png(Image.new("RGB", (4000, 3000), "red")), Image.new("RGB", (1000, 750)))
    assert size_of_bytes(rendered.comparison) == (1280 + 8 + 1280, 960)  # built at preview size
    settings = Settings(token="1:x")
    assert _check(small, settings, 2, keep=False) is None
    kept = _check(encode_png(Image.new("RGB", (3000, 1000), "blue")), settings, 1, keep=True)
    assert max(kept.size) == BEFORE_MAX_SIDE
    with pytest.raises(ImageError):
        _check(b"<html></html>", settings, 1, keep=True)


def encode_png(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.save(out, "PNG", compress_level=1)
    return out.getvalue()


def size_of_bytes(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as img:
        return img.size
