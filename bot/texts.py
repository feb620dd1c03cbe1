"""Every sentence the bot says, in English and Russian; one place to read and translate them."""

from __future__ import annotations

import re

from restoration.image_io import MB, MP, Limits

from .modes import DEFAULT_SR_INPUT, Mode, RepairStrength, SrInput, Vividness

LANGUAGES = ("en", "ru")
DEFAULT_LANGUAGE = "en"


def language_of(code: str | None) -> str:
    """The bot's language for a Telegram ``language_code``: Russian for ``ru``, else English."""
    if code and code.split("-")[0].lower() == "ru":
        return "ru"
    return DEFAULT_LANGUAGE


MODE_NAMES: dict[str, dict[Mode, str]] = {
    "en": {
        Mode.REPAIR: "🩹 Repair",
        Mode.COLORIZE: "🎨 Colourise",
        Mode.UPSCALE_X2: "🔍 Upscale ×2",
        Mode.UPSCALE_X4: "🔎 Upscale ×4",
        Mode.RESTORE: "✨ Restore (repair + colour + ×2)",
    },
    "ru": {
        Mode.REPAIR: "🩹 Ретушь",
        Mode.COLORIZE: "🎨 Раскрасить",
        Mode.UPSCALE_X2: "🔍 Увеличить ×2",
        Mode.UPSCALE_X4: "🔎 Увеличить ×4",
        Mode.RESTORE: "✨ Восстановить (ретушь + цвет + ×2)",
    },
}

# The colour setting: the button label and the name the /settings message quotes.
VIVIDNESS_NAMES: dict[str, dict[Vividness, tuple[str, str]]] = {
    "en": {
        Vividness.NATURAL: ("🌿 Natural", "natural (the most faithful)"),
        Vividness.DEFAULT: ("⚖️ Default", "default"),
        Vividness.VIVID: ("🌈 Vivid", "vivid"),
    },
    "ru": {
        Vividness.NATURAL: ("🌿 Естественные", "естественные (самые правдоподобные)"),
        Vividness.DEFAULT: ("⚖️ Обычные", "обычные"),
        Vividness.VIVID: ("🌈 Яркие", "яркие"),
    },
}

# The repair strength: the button label and the name the /settings message quotes.
STRENGTH_NAMES: dict[str, dict[RepairStrength, tuple[str, str]]] = {
    "en": {
        RepairStrength.LIGHT: ("🪶 Light", "light"),
        RepairStrength.MEDIUM: ("🖌️ Medium", "medium"),
        RepairStrength.FULL: ("🛠️ Full", "full (default)"),
    },
    "ru": {
        RepairStrength.LIGHT: ("🪶 Слабая", "слабая"),
        RepairStrength.MEDIUM: ("🖌️ Средняя", "средняя"),
        RepairStrength.FULL: ("🛠️ Полная", "полная (по умолчанию)"),
    },
}

# What the photos for ×2 are: the button label and the name the /settings message quotes.
SR_INPUT_NAMES: dict[str, dict[SrInput, tuple[str, str]]] = {
    "en": {
        SrInput.CLEAN: ("🖼️ Sharp originals", "sharp (scans, camera originals; default)"),
        SrInput.COMPRESSED: ("📱 Compressed JPEGs", "compressed (messenger and phone JPEGs)"),
    },
    "ru": {
        SrInput.CLEAN: ("🖼️ Чёткие оригиналы", "чёткие (сканы, оригиналы с камеры; по умолчанию)"),
        SrInput.COMPRESSED: ("📱 Сжатые JPEG", "сжатые (JPEG из мессенджеров и с телефона)"),
    },
}

COMMANDS: dict[str, list[tuple[str, str]]] = {
    "en": [
        ("start", "Start and choose a mode"),
        ("mode", "Change the mode"),
        ("settings", "Before/after comparison, colours, repair strength, compressed photos"),
        ("cancel", "Cancel photos waiting in the queue"),
        ("help", "Modes, limits and privacy"),
    ],
    "ru": [
        ("start", "Начать и выбрать режим"),
        ("mode", "Сменить режим"),
        ("settings", "Сравнение «до/после», цвета, сила ретуши, сжатые фото"),
        ("cancel", "Отменить фото в очереди"),
        ("help", "Режимы, ограничения и приватность"),
    ],
}

_TEXTS: dict[str, dict[str, str]] = {
    "start": {
        "en": "Hi! I restore old photos. Restore, the default mode, repairs damage (grain, dust, scratches, "
              "fading), colourises a black-and-white picture and enlarges it ×2; each other mode does one thing.\n"
              "Choose a mode, then send a photo (or an image as a file for the best quality).\n"
              "Current mode: {mode}.",
        "ru": "Привет! Я восстанавливаю старые фотографии. Режим «Восстановить» (выбран по умолчанию) убирает дефекты "
              "(зерно, пыль, царапины, выцветание), раскрашивает чёрно-белый снимок и увеличивает его в 2 раза; "
              "остальные режимы делают что-то одно.\n"
              "Выберите режим и пришлите фото (или изображение файлом — так качество лучше).\n"
              "Текущий режим: {mode}.",
    },
    "help": {
        "en": "Modes:\n"
              "• Repair — removes grain, noise, dust, scratches and JPEG blocks, brings back faded contrast; "
              "the size stays the same.\n"
              "• Colourise — adds colour to a black-and-white photo.\n"
              "• Upscale ×2 / ×4 — makes the picture 2 or 4 times larger.\n"
              "• Restore — repair, colourise, then ×2.\n\n"
              "Send a photo, an image as a file (JPEG, PNG, WebP, BMP, TIFF, HEIC, AVIF) or an album. "
              "Limits: {max_mb:.0f} MB per file, {max_mp:.0f} MP per image, {out_mp:.0f} MP per result.\n"
              "You get the result as a photo and as a file with the full quality.\n\n"
              "Privacy: images are processed in memory and not stored; only the file reference is kept "
              "until your photo is done.\n"
              "/mode — change mode, /settings — before/after comparison, how vivid the colours are, how "
              "strong the repair is and whether the photos for ×2 are sharp originals or compressed JPEGs "
              "(from messengers, phones), "
              "/cancel — cancel waiting photos.",
        "ru": "Режимы:\n"
              "• Ретушь — убирает зерно, шум, пыль, царапины и артефакты JPEG, возвращает выцветшему снимку "
              "контраст; размер не меняется.\n"
              "• Раскрасить — добавляет цвет чёрно-белому фото.\n"
              "• Увеличить ×2 / ×4 — делает снимок в 2 или 4 раза больше.\n"
              "• Восстановить — ретушь, раскраска, затем ×2.\n\n"
              "Пришлите фото, изображение файлом (JPEG, PNG, WebP, BMP, TIFF, HEIC, AVIF) или альбом. "
              "Ограничения: {max_mb:.0f} МБ на файл, {max_mp:.0f} Мпикс на изображение, "
              "{out_mp:.0f} Мпикс на результат.\n"
              "Результат приходит фотографией и файлом в полном качестве.\n\n"
              "Приватность: изображения обрабатываются в памяти и не сохраняются; до окончания обработки "
              "хранится только ссылка на файл.\n"
              "/mode — сменить режим, /settings — сравнение «до/после», яркость цветов, сила ретуши и какие "
              "фото увеличиваются ×2 (чёткие оригиналы или сжатые JPEG из мессенджеров и с телефона), "
              "/cancel — отменить ожидающие фото.",
    },
    "choose_mode": {"en": "Choose a mode:", "ru": "Выберите режим:"},
    "mode_set": {"en": "Mode: {mode}. Now send a photo.", "ru": "Режим: {mode}. Теперь пришлите фото."},
    "settings": {
        "en": "Before/after comparison: {state}.\n"
              "Colours (colourise and restore): {vividness}.\n"
              "Repair strength (repair and restore): {strength}.\n"
              "Photos for ×2 (upscale ×2 and restore): {sr_input}.\n"
              "Choose compressed for heavily compressed photos (saved from a messenger or strongly compressed "
              "by a phone); sharp originals and lightly compressed JPEGs come out better with the default.",
        "ru": "Сравнение «до/после»: {state}.\n"
              "Цвета (раскраска и восстановление): {vividness}.\n"
              "Сила ретуши (ретушь и восстановление): {strength}.\n"
              "Фото для ×2 (увеличение ×2 и восстановление): {sr_input}.\n"
              "«Сжатые» — для сильно сжатых фото (сохранённых из мессенджера или пережатых телефоном); "
              "чёткие оригиналы и слабо сжатые JPEG лучше получаются с вариантом по умолчанию.",
    },
    "settings_compare": {
        "en": "Before/after comparison: {state}.",
        "ru": "Сравнение «до/после»: {state}.",
    },
    "vividness_set": {
        "en": "Colours: {vividness}.",
        "ru": "Цвета: {vividness}.",
    },
    "strength_set": {
        "en": "Repair strength: {strength}.",
        "ru": "Сила ретуши: {strength}.",
    },
    "sr_input_set": {
        "en": "Photos for ×2: {sr_input}.",
        "ru": "Фото для ×2: {sr_input}.",
    },
    "on": {"en": "on", "ru": "включено"},
    "off": {"en": "off", "ru": "выключено"},
    "compare_button_on": {"en": "Comparison: on ✅", "ru": "Сравнение: вкл. ✅"},
    "compare_button_off": {"en": "Comparison: off", "ru": "Сравнение: выкл."},
    "cancelled": {
        "en": "Cancelled {count} waiting job(s).",
        "ru": "Отменено заданий в очереди: {count}.",
    },
    "nothing_to_cancel": {
        "en": "Nothing is waiting in the queue. A photo already in work cannot be stopped.",
        "ru": "В очереди ничего нет. Фото, которое уже обрабатывается, остановить нельзя.",
    },
    "queued": {
        "en": "⏳ In the queue: position {position}. Mode: {mode}.",
        "ru": "⏳ В очереди: место {position}. Режим: {mode}.",
    },
    "working": {"en": "⚙️ Working… {mode}", "ru": "⚙️ Обрабатываю… {mode}"},
    "working_many": {"en": "⚙️ Working… {mode} ({done}/{total})", "ru": "⚙️ Обрабатываю… {mode} ({done}/{total})"},
    "resumed": {
        "en": "♻️ The bot restarted; your photo is back in the queue.",
        "ru": "♻️ Бот перезапустился; ваше фото снова в очереди.",
    },
    "restarting": {
        "en": "♻️ The bot is restarting. Your photo is saved and will be processed right after the restart.",
        "ru": "♻️ Бот перезапускается. Ваше фото сохранено и будет обработано сразу после перезапуска.",
    },
    "text_hint": {
        "en": "Send me a photo or an image file. /help explains the modes.",
        "ru": "Пришлите фото или изображение файлом. /help — о режимах.",
    },
    "not_image": {
        "en": "I can only work with images. Send a photo or an image as a file (JPEG, PNG, WebP, BMP, TIFF, HEIC, "
              "AVIF).",
        "ru": "Я работаю только с изображениями. Пришлите фото или изображение файлом (JPEG, PNG, WebP, BMP, TIFF, "
              "HEIC, AVIF).",
    },
    "file_too_big": {
        "en": "The file is {size_mb:.1f} MB; I can take at most {limit_mb:.0f} MB. "
              "Send a smaller image or a compressed copy (JPEG).",
        "ru": "Файл весит {size_mb:.1f} МБ, а я принимаю не больше {limit_mb:.0f} МБ. "
              "Пришлите изображение поменьше или сжатую копию (JPEG).",
    },
    "too_many_queued": {
        "en": "You already have {count} job(s) waiting. Wait for the results, then send more.",
        "ru": "У вас уже {count} задани(я) в очереди. Дождитесь результатов и присылайте ещё.",
    },
    "not_allowed": {
        "en": "Sorry, this bot is private.",
        "ru": "Извините, это закрытый бот.",
    },
    "service_down": {
        "en": "😔 Sorry, the restoration service is not answering right now. Please send the photo again in a minute.",
        "ru": "😔 Извините, сервис обработки сейчас не отвечает. Пришлите фото ещё раз через минуту.",
    },
    "service_error": {
        "en": "😔 Sorry, processing failed on the server. Please try again later or choose another mode.",
        "ru": "😔 Извините, обработка на сервере не удалась. Попробуйте позже или выберите другой режим.",
    },
    "download_failed": {
        "en": "😔 I could not download this file from Telegram. Please send it again.",
        "ru": "😔 Не удалось скачать файл из Telegram. Пришлите его ещё раз.",
    },
    "caption": {"en": "{mode} · {width}×{height}", "ru": "{mode} · {width}×{height}"},
    "caption_preview": {
        "en": "{mode} · preview {pw}×{ph}; the full {width}×{height} image is in the file below.",
        "ru": "{mode} · превью {pw}×{ph}; полное изображение {width}×{height} — в файле ниже.",
    },
    "caption_compare": {"en": "Before / after", "ru": "До / после"},
    # Refusals of an image, by the `type` of restoration.image_io.ImageError (the API's error body).
    "err_TooManyPixels": {
        "en": "The image is too large ({size}); I accept up to {max_mp:.0f} MP. Send a smaller image.",
        "ru": "Изображение слишком большое ({size}); я принимаю до {max_mp:.0f} Мпикс. Пришлите поменьше.",
    },
    "err_OutputTooLarge": {
        "en": "The result would be too large ({size} upscaled); a result may have at most {out_mp:.0f} MP. "
              "Send a smaller image or choose ×2 instead of ×4.",
        "ru": "Результат получится слишком большим ({size} после увеличения); результат может быть не больше "
              "{out_mp:.0f} Мпикс. Пришлите изображение поменьше или выберите ×2 вместо ×4.",
    },
    "err_ExtremeAspectRatio": {
        "en": "The image is too elongated ({size}); the limit is {max_aspect:g}:1. Crop it and send again.",
        "ru": "Изображение слишком вытянутое ({size}); допускается до {max_aspect:g}:1. Обрежьте его и пришлите снова.",
    },
    "err_UnsupportedMediaType": {
        "en": "I cannot read this file as an image. Send JPEG, PNG, WebP, BMP, TIFF, HEIC or AVIF.",
        "ru": "Не получается прочитать файл как изображение. Пришлите JPEG, PNG, WebP, BMP, TIFF, HEIC или AVIF.",
    },
    "err_CorruptImage": {
        "en": "The image file is damaged or incomplete. Re-save it and send it again.",
        "ru": "Файл изображения повреждён или неполон. Пересохраните его и пришлите снова.",
    },
    "err_EmptyBody": {
        "en": "The file is empty. Send an image.",
        "ru": "Файл пустой. Пришлите изображение.",
    },
    "err_TooManyBytes": {
        "en": "The file is too big; I can take at most {max_mb:.0f} MB.",
        "ru": "Файл слишком большой; я принимаю не больше {max_mb:.0f} МБ.",
    },
    "err_other": {
        "en": "The service refused this image: {detail}",
        "ru": "Сервис не принял изображение: {detail}",
    },
}


def text(lang: str, key: str, **values: object) -> str:
    """The sentence ``key`` in ``lang`` (English when that language lacks it), filled with ``values``."""
    entry = _TEXTS[key]
    template = entry.get(lang) or entry[DEFAULT_LANGUAGE]
    return template.format(**values) if values else template


def mode_name(lang: str, mode: Mode) -> str:
    """Button label and display name of a mode."""
    return MODE_NAMES.get(lang, MODE_NAMES[DEFAULT_LANGUAGE])[mode]


def vividness_button(lang: str, vividness: Vividness) -> str:
    """Button label of a colour setting."""
    return VIVIDNESS_NAMES.get(lang, VIVIDNESS_NAMES[DEFAULT_LANGUAGE])[vividness][0]


def vividness_name(lang: str, vividness: Vividness) -> str:
    """How the /settings message names a colour setting."""
    return VIVIDNESS_NAMES.get(lang, VIVIDNESS_NAMES[DEFAULT_LANGUAGE])[vividness][1]


def strength_button(lang: str, strength: RepairStrength) -> str:
    """Button label of a repair strength."""
    return STRENGTH_NAMES.get(lang, STRENGTH_NAMES[DEFAULT_LANGUAGE])[strength][0]


def strength_name(lang: str, strength: RepairStrength) -> str:
    """How the /settings message names a repair strength."""
    return STRENGTH_NAMES.get(lang, STRENGTH_NAMES[DEFAULT_LANGUAGE])[strength][1]


def sr_input_button(lang: str, sr_input: SrInput) -> str:
    """Button label of a ×2 input setting."""
    return SR_INPUT_NAMES.get(lang, SR_INPUT_NAMES[DEFAULT_LANGUAGE])[sr_input][0]


def sr_input_name(lang: str, sr_input: SrInput) -> str:
    """How the /settings message names a ×2 input setting."""
    return SR_INPUT_NAMES.get(lang, SR_INPUT_NAMES[DEFAULT_LANGUAGE])[sr_input][1]


def settings_text(lang: str, compare: bool, vividness: Vividness, strength: RepairStrength,
                  sr_input: SrInput = DEFAULT_SR_INPUT) -> str:
    """The /settings message: every setting as it is now."""
    return text(lang, "settings", state=text(lang, "on" if compare else "off"),
                vividness=vividness_name(lang, vividness), strength=strength_name(lang, strength),
                sr_input=sr_input_name(lang, sr_input))


def limit_values(limits: Limits, download_limit: int) -> dict[str, float]:
    """The numbers the help and error texts quote."""
    return {
        "max_mb": download_limit / MB,
        "max_mp": limits.max_input_pixels / MP,
        "out_mp": limits.max_output_pixels / MP,
        "max_aspect": limits.max_aspect,
    }


def help_text(lang: str, limits: Limits, download_limit: int) -> str:
    """The /help message with the limits in force."""
    return text(lang, "help", **limit_values(limits, download_limit))


def image_error_text(lang: str, kind: str, detail: str, limits: Limits, download_limit: int) -> str:
    """A friendly refusal for an image error (``kind`` is ImageError.kind or the API's ``type``)."""
    key = f"err_{kind}"
    if key not in _TEXTS:
        key = "err_other"
    # The API's messages are English; the size they quote ("8000×6000") reads in any language.
    found = re.search(r"\d+×\d+", detail)
    return text(lang, key, detail=detail, size=found.group(0) if found else "?",
                **limit_values(limits, download_limit))
