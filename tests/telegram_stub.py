"""A local stand-in of the Telegram Bot API, served with aiohttp on 127.0.0.1 for the bot's tests.

It speaks enough of the real API for the bot: getMe, getUpdates (long poll), getFile and the
file route ``/file/bot<token>/<path>``, sendMessage, sendPhoto/sendDocument (multipart),
editMessageText, deleteMessage, sendChatAction, answerCallbackQuery, setMyCommands,
deleteWebhook/setWebhook. Tests play the users: they inject updates (messages, photos,
documents, albums, button presses, also under messages too old to edit), make methods fail (429 with ``retry_after``, 5xx, dropped
connections, delays) and read back every call the bot made.

The server runs in its own thread and event loop, so synchronous tests can drive it while the
bot runs as a separate process.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from PIL import Image

DEFAULT_TOKEN = "123456789:AAH-stand-in-SECRET-token_for_tests"
BOT_USER = {"id": 123456789, "is_bot": True, "first_name": "Restore", "username": "restore_test_bot",
            "can_join_groups": False, "can_read_all_group_messages": False, "supports_inline_queries": False}
GET_FILE_LIMIT = 20 * 1024 * 1024  # Telegram's getFile refuses bigger files


@dataclass
class Call:
    """One Bot API call the bot made: method, form fields (JSON values decoded), uploaded files."""

    method: str
    params: dict[str, Any]
    files: dict[str, tuple[str, bytes]]  # field -> (file name, bytes)
    at: float
    status: int = 200
    result: Any = None

    @property
    def chat_id(self) -> int | None:
        value = self.params.get("chat_id")
        return int(value) if value is not None else None

    def upload(self, field_name: str) -> tuple[str, bytes] | None:
        """The file sent in ``field_name`` (``photo``, ``document``)."""
        return self.files.get(field_name)


@dataclass
class Fault:
    """An injected failure for the next ``times`` calls of ``method`` (``"file"`` = downloads)."""

    method: str
    times: int
    status: int = 429
    retry_after: int | None = None
    description: str = "Too Many Requests"
    drop: bool = False
    delay: float = 0.0
    chat_id: int | None = None  # only calls for this chat
    hold: threading.Event | None = None  # answer only once the test sets it


@dataclass
class User:
    id: int
    first_name: str = "Test"
    language_code: str = "en"

    def as_dict(self) -> dict:
        return {"id": self.id, "is_bot": False, "first_name": self.first_name, "language_code": self.language_code}

    def chat(self) -> dict:
        return {"id": self.id, "type": "private", "first_name": self.first_name}


@dataclass
class _Stored:
    path: str
    data: bytes | None  # None: metadata only (a file too big to be served)
    size: int


@dataclass
class TelegramStub:
    """The stand-in server. Use as a context manager or call :meth:`start` / :meth:`stop`."""

    token: str = DEFAULT_TOKEN
    host: str = "127.0.0.1"
    port: int = 0
    calls: list[Call] = field(default_factory=list)
    messages: dict[tuple[int, int], dict] = field(default_factory=dict)  # what each chat shows now
    too_old: set[tuple[int, int]] = field(default_factory=set)  # (chat, message) the bot may no longer edit

    def __post_init__(self) -> None:
        self._cond = threading.Condition()
        self._updates: list[dict] = []
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(1000)
        self._file_ids = itertools.count(1)
        self._files: dict[str, _Stored] = {}
        self._faults: list[Fault] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._new_update: asyncio.Event | None = None
        self.confirmed_offset = 0
        self._holding = 0
        self._closing = False

    # -- server life -------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> TelegramStub:
        ready = threading.Event()

        def serve() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._start_server())
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._runner.cleanup())
            self._loop.close()

        self._thread = threading.Thread(target=serve, name="telegram-stub", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the Telegram stand-in did not start")
        return self

    async def _start_server(self) -> None:
        self._new_update = asyncio.Event()
        app = web.Application(client_max_size=100 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._file)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            # End the long polls still open (their bot may be gone) so the server stops at once.
            self._closing = True
            self._loop.call_soon_threadsafe(self._new_update.set)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = None

    def __enter__(self) -> TelegramStub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what tests do: users talk, faults happen ------------------------------------------------

    def add_file(self, data: bytes | None, suffix: str = "jpg", size: int | None = None) -> tuple[str, str]:
        """Register a file the bot can download; returns (file_id, file_unique_id).

        ``data=None`` with a ``size`` registers metadata only (a file Telegram would not serve).
        """
        n = next(self._file_ids)
        file_id, unique = f"FILE{n:05d}-{suffix}", f"U{n:05d}"
        with self._cond:
            self._files[file_id] = _Stored(path=f"files/file_{n}.{suffix}", data=data,
                                           size=size if size is not None else len(data or b""))
        return file_id, unique

    def _inject(self, payload: dict) -> dict:
        with self._cond:
            update = {"update_id": next(self._update_ids), **payload}
            self._updates.append(update)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._new_update.set)
        return update

    def _message(self, user: User, **content: Any) -> dict:
        message = {"message_id": next(self._message_ids), "date": int(time.time()), "chat": user.chat(),
                   "from": user.as_dict(), **content}
        with self._cond:
            self.messages[(user.id, message["message_id"])] = message
        return message

    def user_text(self, user: User, text: str) -> dict:
        """The user sends a text (``/start`` etc. are commands with their entity)."""
        content: dict[str, Any] = {"text": text}
        if text.startswith("/"):
            content["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
        message = self._message(user, **content)
        self._inject({"message": message})
        return message

    def user_photo(self, user: User, jpeg: bytes, width: int, height: int, media_group_id: str | None = None,
                   size: int | None = None, caption: str | None = None) -> dict:
        """The user sends a photo: a thumbnail size and the full size, like Telegram."""
        thumb_id, thumb_unique = self.add_file(_thumbnail(jpeg), "jpg")
        file_id, unique = self.add_file(jpeg, "jpg", size=size)
        sizes = [
            {"file_id": thumb_id, "file_unique_id": thumb_unique, "width": min(width, 90),
             "height": min(height, 90), "file_size": 1000},
            {"file_id": file_id, "file_unique_id": unique, "width": width, "height": height,
             "file_size": size if size is not None else len(jpeg)},
        ]
        content: dict[str, Any] = {"photo": sizes}
        if media_group_id:
            content["media_group_id"] = media_group_id
        if caption:
            content["caption"] = caption
        message = self._message(user, **content)
        self._inject({"message": message})
        return message

    def user_document(self, user: User, data: bytes | None, file_name: str, mime_type: str,
                      media_group_id: str | None = None, size: int | None = None) -> dict:
        """The user sends a file (an image as a document keeps its original bytes)."""
        file_id, unique = self.add_file(data, file_name.rsplit(".", 1)[-1] or "bin", size=size)
        document = {"file_id": file_id, "file_unique_id": unique, "file_name": file_name, "mime_type": mime_type,
                    "file_size": size if size is not None else len(data or b"")}
        content: dict[str, Any] = {"document": document}
        if media_group_id:
            content["media_group_id"] = media_group_id
        message = self._message(user, **content)
        self._inject({"message": message})
        return message

    def user_location(self, user: User) -> dict:
        message = self._message(user, location={"latitude": 55.75, "longitude": 37.62})
        self._inject({"message": message})
        return message

    def user_presses(self, user: User, message: dict, callback_data: str, inaccessible: bool = False) -> dict:
        """The user taps an inline button with ``callback_data`` under ``message``.

        ``inaccessible=True``: the message is older than 48 hours, so Telegram sends only what the
        Bot API calls an InaccessibleMessage (chat, message_id and ``date: 0``) and refuses edits.
        """
        if inaccessible:
            message = {"chat": message["chat"], "message_id": message["message_id"], "date": 0}
            with self._cond:
                self.too_old.add((int(message["chat"]["id"]), int(message["message_id"])))
        query = {"id": str(next(self._update_ids) * 7919), "from": user.as_dict(), "message": message,
                 "chat_instance": str(user.id), "data": callback_data}
        return self._inject({"callback_query": query})

    def fail(self, method: str, times: int = 1, status: int = 429, retry_after: int | None = None,
             description: str | None = None, drop: bool = False, delay: float = 0.0,
             chat_id: int | None = None) -> None:
        """Make the next ``times`` calls of ``method`` (for ``chat_id`` when given) fail, or only wait
        ``delay`` s when ``status`` is 200. ``method="file"`` applies to file downloads."""
        if description is None:
            description = {429: f"Too Many Requests: retry after {retry_after}", 403: "Forbidden: bot was blocked by "
                           "the user"}.get(status, "Internal Server Error")
        with self._cond:
            self._faults.append(Fault(method=method, times=times, status=status, retry_after=retry_after,
                                      description=description, drop=drop, delay=delay, chat_id=chat_id))

    def hold(self, method: str, chat_id: int | None = None) -> Callable[[], None]:
        """Hold the next call of ``method`` (``"file"``: the next download) until the returned
        function is called; the call then proceeds normally. Keeps a job in flight for as long as
        a test needs."""
        gate = threading.Event()
        with self._cond:
            self._faults.append(Fault(method=method, times=1, status=200, description="", chat_id=chat_id,
                                      hold=gate))
        return gate.set

    def held(self) -> int:
        """How many calls are being held right now."""
        with self._cond:
            return self._holding

    # -- what tests read back ------------------------------------------------------------------

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
        """Block until ``predicate()`` is truthy (checked on every call the bot makes); return its value."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = predicate()
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    methods = [c.method for c in self.calls[-30:]]
                    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}; last calls: {methods}")
                self._cond.wait(min(left, 0.2))

    def calls_of(self, method: str, chat_id: int | None = None, ok_only: bool = True) -> list[Call]:
        with self._cond:
            return [c for c in self.calls if c.method == method and (chat_id is None or c.chat_id == chat_id)
                    and (not ok_only or c.status == 200)]

    def texts_to(self, chat_id: int) -> list[str]:
        """Texts of every message sent to the chat (including edited versions)."""
        return [c.params.get("text", "") for c in self.calls
                if c.chat_id == chat_id and c.status == 200 and c.method in ("sendMessage", "editMessageText")]

    def visible_bot_messages(self, chat_id: int) -> list[dict]:
        """Messages from the bot still shown in the chat (after edits and deletions)."""
        with self._cond:
            return [m for (cid, _), m in self.messages.items() if cid == chat_id and m["from"]["is_bot"]]

    # -- the API ----------------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        params, files = await self._read_params(request)
        if request.match_info["token"] != self.token:
            return self._record(method, params, files, 401, error="Unauthorized")
        fault = self._take_fault(method, params.get("chat_id"))
        if fault is not None:
            await self._wait_out(fault)
            if fault.drop:
                self._record(method, params, files, 0, error="dropped")
                request.transport.close()
                raise ConnectionResetError("dropped by the Telegram stand-in")
            if fault.status != 200:
                return self._record(method, params, files, fault.status, error=fault.description,
                                    retry_after=fault.retry_after)
        handler = getattr(self, f"_m_{method}", None)
        if method == "getUpdates":
            return await self._get_updates(params, files)
        if handler is None:
            return self._record(method, params, files, 404, error="Not Found: method not found")
        try:
            result = handler(params, files)
        except _ApiError as exc:
            return self._record(method, params, files, exc.status, error=exc.description)
        return self._record(method, params, files, 200, result=result)

    async def _read_params(self, request: web.Request) -> tuple[dict[str, Any], dict[str, tuple[str, bytes]]]:
        params: dict[str, Any] = {}
        files: dict[str, tuple[str, bytes]] = {}
        if request.content_type == "application/json":
            params = await request.json()
        elif request.can_read_body:
            form = await request.post()
            uploads = {}
            for key, value in form.items():
                if isinstance(value, web.FileField):
                    uploads[key] = (value.filename, value.file.read())
                else:
                    params[key] = _decode(value)
            for key, value in list(params.items()):
                if isinstance(value, str) and value.startswith("attach://"):
                    files[key] = uploads[value.removeprefix("attach://")]
        params.update({k: _decode(v) for k, v in request.query.items()})
        return params, files

    def _record(self, method: str, params: dict, files: dict, status: int, result: Any = None,
                error: str | None = None, retry_after: int | None = None) -> web.Response:
        with self._cond:
            self.calls.append(Call(method=method, params=params, files=files, at=time.monotonic(), status=status,
                                   result=result))
            self._cond.notify_all()
        if status == 0:
            return web.Response(status=500)
        if status == 200:
            return web.json_response({"ok": True, "result": result})
        body: dict[str, Any] = {"ok": False, "error_code": status, "description": error}
        if retry_after is not None:
            body["parameters"] = {"retry_after": retry_after}
        return web.json_response(body, status=status)

    def _take_fault(self, method: str, chat_id: Any = None) -> Fault | None:
        with self._cond:
            for fault in self._faults:
                if (fault.method == method and fault.times > 0
                        and (fault.chat_id is None or str(fault.chat_id) == str(chat_id))):
                    fault.times -= 1
                    return fault
        return None

    async def _wait_out(self, fault: Fault) -> None:
        if fault.delay:
            await asyncio.sleep(fault.delay)
        if fault.hold is not None:
            with self._cond:
                self._holding += 1
                self._cond.notify_all()
            try:
                while not fault.hold.is_set() and not self._closing:
                    await asyncio.sleep(0.05)
            finally:
                with self._cond:
                    self._holding -= 1

    async def _get_updates(self, params: dict, files: dict) -> web.Response:
        offset = int(params.get("offset") or 0)
        timeout = float(params.get("timeout") or 0)
        limit = int(params.get("limit") or 100)
        deadline = time.monotonic() + timeout
        while True:
            with self._cond:
                if offset:
                    # Updates below the offset are confirmed: Telegram forgets them.
                    self.confirmed_offset = max(self.confirmed_offset, offset)
                    self._updates = [u for u in self._updates if u["update_id"] >= offset]
                pending = self._updates[:limit]
                if pending or time.monotonic() >= deadline or self._closing:
                    result = list(pending)
                    break
                self._new_update.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new_update.wait(), max(0.0, min(deadline - time.monotonic(), 1.0)))
        # getUpdates calls are not recorded one by one (there are many); only those that delivered.
        if result:
            return self._record("getUpdates", params, files, 200, result=result)
        return web.json_response({"ok": True, "result": []})

    async def _file(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return web.Response(status=401, text="Unauthorized")
        path = request.match_info["path"]
        fault = self._take_fault("file")
        if fault is not None:
            await self._wait_out(fault)
            if fault.drop:
                request.transport.close()
                raise ConnectionResetError("dropped by the Telegram stand-in")
            if fault.status != 200:
                return web.Response(status=fault.status, text=fault.description)
        with self._cond:
            stored = next((f for f in self._files.values() if f.path == path and f.data is not None), None)
            self.calls.append(Call(method="file", params={"path": path}, files={}, at=time.monotonic(),
                                   status=200 if stored else 404))
            self._cond.notify_all()
        if stored is None:
            return web.Response(status=404, text="Not Found")
        return web.Response(body=stored.data, content_type="application/octet-stream")

    # -- methods ------------------------------------------------------------------------------

    def _bot_message(self, params: dict, **content: Any) -> dict:
        chat_id = int(params["chat_id"])
        message = {"message_id": next(self._message_ids), "date": int(time.time()),
                   "chat": {"id": chat_id, "type": "private", "first_name": "Test"}, "from": BOT_USER, **content}
        reply = params.get("reply_parameters")
        if isinstance(reply, dict) and (chat_id, reply.get("message_id")) in self.messages:
            message["reply_to_message"] = self.messages[(chat_id, reply["message_id"])]
        with self._cond:
            self.messages[(chat_id, message["message_id"])] = message
        return message

    def _m_getMe(self, params: dict, files: dict) -> dict:
        return BOT_USER

    def _m_deleteWebhook(self, params: dict, files: dict) -> bool:
        return True

    def _m_setWebhook(self, params: dict, files: dict) -> bool:
        return True

    def _m_setMyCommands(self, params: dict, files: dict) -> bool:
        return True

    def _m_sendChatAction(self, params: dict, files: dict) -> bool:
        return True

    def _m_answerCallbackQuery(self, params: dict, files: dict) -> bool:
        return True

    def _m_getFile(self, params: dict, files: dict) -> dict:
        stored = self._files.get(params.get("file_id", ""))
        if stored is None:
            raise _ApiError(400, "Bad Request: invalid file_id")
        if stored.size > GET_FILE_LIMIT:
            raise _ApiError(400, "Bad Request: file is too big")
        return {"file_id": params["file_id"], "file_unique_id": "U" + params["file_id"], "file_size": stored.size,
                "file_path": stored.path}

    def _m_sendMessage(self, params: dict, files: dict) -> dict:
        content: dict[str, Any] = {"text": params["text"]}
        if "reply_markup" in params:
            content["reply_markup"] = params["reply_markup"]
        return self._bot_message(params, **content)

    def _m_sendPhoto(self, params: dict, files: dict) -> dict:
        name, data = _require_upload(files, "photo")
        width, height = _image_size(data)
        if len(data) > 10 * 1024 * 1024:
            raise _ApiError(400, "Bad Request: PHOTO_TOO_BIG")
        if width + height > 10_000 or max(width, height) / min(width, height) > 20:
            raise _ApiError(400, "Bad Request: PHOTO_INVALID_DIMENSIONS")
        file_id, unique = self.add_file(data, "jpg")
        photo = [{"file_id": file_id, "file_unique_id": unique, "width": width, "height": height,
                  "file_size": len(data)}]
        return self._bot_message(params, photo=photo, caption=params.get("caption"))

    def _m_sendDocument(self, params: dict, files: dict) -> dict:
        name, data = _require_upload(files, "document")
        if len(data) > 50 * 1024 * 1024:
            raise _ApiError(413, "Request Entity Too Large")
        file_id, unique = self.add_file(data, name.rsplit(".", 1)[-1])
        document = {"file_id": file_id, "file_unique_id": unique, "file_name": name, "file_size": len(data)}
        return self._bot_message(params, document=document, caption=params.get("caption"))

    def _m_editMessageText(self, params: dict, files: dict) -> dict:
        key = (int(params["chat_id"]), int(params["message_id"]))
        with self._cond:
            message = self.messages.get(key)
            if message is None:
                raise _ApiError(400, "Bad Request: message to edit not found")
            if key in self.too_old:
                raise _ApiError(400, "Bad Request: message can't be edited")
            if message.get("text") == params["text"] and "reply_markup" not in params:
                raise _ApiError(400, "Bad Request: message is not modified")
            message["text"] = params["text"]
            if "reply_markup" in params:
                message["reply_markup"] = params["reply_markup"]
        return message

    def _m_deleteMessage(self, params: dict, files: dict) -> bool:
        key = (int(params["chat_id"]), int(params["message_id"]))
        with self._cond:
            if self.messages.pop(key, None) is None:
                raise _ApiError(400, "Bad Request: message to delete not found")
        return True


class _ApiError(Exception):
    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.description = description


def _decode(value: Any) -> Any:
    """Form values that aiogram JSON-encoded (objects, lists, numbers, booleans) back to Python."""
    if isinstance(value, str) and value[:1] in "{[" or value in ("true", "false"):
        with contextlib.suppress(ValueError):
            return json.loads(value)
    return value


def _require_upload(files: dict, field_name: str) -> tuple[str, bytes]:
    if field_name not in files:
        raise _ApiError(400, f"Bad Request: there is no {field_name} in the request")
    return files[field_name]


def _image_size(data: bytes) -> tuple[int, int]:
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.size
    except Exception as exc:  # noqa: BLE001 - anything unreadable is Telegram's IMAGE_PROCESS_FAILED
        raise _ApiError(400, "Bad Request: IMAGE_PROCESS_FAILED") from exc


def _thumbnail(jpeg: bytes) -> bytes:
    with Image.open(io.BytesIO(jpeg)) as img:
        img = img.convert("RGB")
        img.thumbnail((90, 90))
        out = io.BytesIO()
        img.save(out, format="JPEG", quality=70)
        return out.getvalue()
