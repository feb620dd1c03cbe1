"""Authenticating gateway in front of TorchServe's inference API, for more than one serving pod.

TorchServe 0.12 makes its own random keys in every process and cannot be given one, so two
replicas behind one Service would hold two keys while a client holds one. In the gateway set-up
(k8s/components/gateway) TorchServe listens on the pod's loopback with its own authorization
off, and this gateway, the only way in, checks ``Authorization: Bearer <key>`` against keys the
operator keeps in a Secret that every replica and the bot mount. Everything else passes through
unchanged and streamed (status, headers, bodies of any size), so clients see TorchServe's answers.

    python ts_gateway.py

Settings (environment): ``GATEWAY_LISTEN`` (host:port, default 0.0.0.0:8080), ``GATEWAY_UPSTREAM``
(TorchServe's inference URL, default http://127.0.0.1:8090), ``GATEWAY_KEYS_DIR`` (a directory of
files, each holding one accepted key: a mounted Secret; two keys let a rotation happen without
downtime), ``GATEWAY_READ_TIMEOUT`` (seconds an upstream reply may pause, default 600),
``GATEWAY_KEYS_RELOAD`` (seconds between re-reads of the keys, default 10).

``/ping`` answers without a key (health only: probes and load balancers); every other path needs
one. A request without a valid key gets 401 with a JSON body, TorchServe unreachable gets 503
with Retry-After, both in TorchServe's own error shape ``{code, type, message}``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from aiohttp import ClientSession, ClientTimeout, TCPConnector, client_exceptions, hdrs, web

log = logging.getLogger("ts_gateway")

OPEN_PATHS = frozenset({"/ping"})
# Hop-by-hop headers (RFC 9110 §7.6.1) and those the gateway sets itself.
DROP_REQUEST = frozenset(h.lower() for h in (
    hdrs.CONNECTION, hdrs.KEEP_ALIVE, hdrs.PROXY_AUTHENTICATE, hdrs.PROXY_AUTHORIZATION, hdrs.TE,
    hdrs.TRAILER, hdrs.TRANSFER_ENCODING, hdrs.UPGRADE, hdrs.HOST, hdrs.AUTHORIZATION))
DROP_RESPONSE = frozenset(h.lower() for h in (
    hdrs.CONNECTION, hdrs.KEEP_ALIVE, hdrs.PROXY_AUTHENTICATE, hdrs.TE, hdrs.TRAILER,
    hdrs.TRANSFER_ENCODING, hdrs.UPGRADE, hdrs.CONTENT_LENGTH))
CHUNK = 256 * 1024


class ConfigError(Exception):
    """The gateway cannot start as configured; the message says what to fix."""


@dataclass(frozen=True)
class GatewayConfig:
    host: str
    port: int
    upstream: str
    keys_dir: Path
    read_timeout: float
    reload_s: float

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> GatewayConfig:
        env = dict(os.environ if env is None else env)
        host, _, port = env.get("GATEWAY_LISTEN", "0.0.0.0:8080").rpartition(":")
        try:
            return cls(host=host or "0.0.0.0", port=int(port),
                       upstream=env.get("GATEWAY_UPSTREAM", "http://127.0.0.1:8090").rstrip("/"),
                       keys_dir=Path(env.get("GATEWAY_KEYS_DIR", "/var/run/pix2pix/inference-keys")),
                       read_timeout=float(env.get("GATEWAY_READ_TIMEOUT", "600")),
                       reload_s=float(env.get("GATEWAY_KEYS_RELOAD", "10")))
        except ValueError as e:
            raise ConfigError(f"bad gateway setting: {e}") from e


def read_keys(keys_dir: Path) -> tuple[bytes, ...]:
    """Every key in the directory: one per regular file (a Secret's data keys), blank ones skipped.

    Kubernetes mounts a Secret as files plus hidden ``..data`` links; hidden names are ignored."""
    if not keys_dir.is_dir():
        return ()
    keys = []
    for path in sorted(keys_dir.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        key = path.read_text(encoding="utf-8").strip()
        if key:
            keys.append(key.encode())
    return tuple(keys)


class KeyRing:
    """The accepted keys, re-read from disk every ``reload_s`` seconds (a rotated Secret arrives
    in the mounted files without a restart). Comparisons take constant time."""

    MIN_LENGTH = 16

    def __init__(self, keys_dir: Path, reload_s: float) -> None:
        self.keys_dir, self.reload_s = keys_dir, reload_s
        self.keys: tuple[bytes, ...] = ()
        self.loaded_at = 0.0
        self.load()
        if not self.keys:
            raise ConfigError(f"no inference key in {keys_dir} (GATEWAY_KEYS_DIR): refusing to serve without one")

    def load(self) -> None:
        keys = read_keys(self.keys_dir)
        short = [k for k in keys if len(k) < self.MIN_LENGTH]
        if short:
            raise ConfigError(f"an inference key in {self.keys_dir} is shorter than {self.MIN_LENGTH} characters")
        if keys != self.keys and self.loaded_at:
            log.info("inference keys reloaded: %d accepted", len(keys))
        self.keys, self.loaded_at = keys, time.monotonic()

    def refresh(self) -> None:
        if time.monotonic() - self.loaded_at < self.reload_s:
            return
        try:
            self.load()
        except (OSError, ConfigError) as e:  # keep the last good keys; say why
            self.loaded_at = time.monotonic()
            log.warning("keeping the previous inference keys: %s", e)

    def accepts(self, header: str | None) -> bool:
        self.refresh()
        scheme, _, token = (header or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return False
        given = token.strip().encode()
        # check every key (no early exit), so timing says nothing about which one matched
        return bool(sum(hmac.compare_digest(given, k) for k in self.keys))


def error(status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    body = json.dumps({"code": status, "type": kind, "message": message})
    return web.Response(status=status, text=body, content_type="application/json", headers=headers)


def make_app(cfg: GatewayConfig, keys: KeyRing) -> web.Application:
    app = web.Application(client_max_size=0)  # bodies are streamed; TorchServe enforces its own limits

    async def start(app: web.Application) -> None:
        timeout = ClientTimeout(total=None, connect=10, sock_connect=10, sock_read=cfg.read_timeout)
        # no pool limit: TorchServe queues and answers 503 itself when its job queue is full
        app["session"] = ClientSession(timeout=timeout, connector=TCPConnector(limit=0),
                                       auto_decompress=False, skip_auto_headers=("User-Agent",))

    async def stop(app: web.Application) -> None:
        await app["session"].close()

    async def forward(request: web.Request) -> web.StreamResponse:
        if request.path not in OPEN_PATHS and not keys.accepts(request.headers.get(hdrs.AUTHORIZATION)):
            return error(401, "Unauthorized", "a valid inference key is required: send it as "
                         "'Authorization: Bearer <key>'", headers={"WWW-Authenticate": 'Bearer realm="pix2pix"'})
        headers = {k: v for k, v in request.headers.items() if k.lower() not in DROP_REQUEST}
        headers["X-Forwarded-For"] = request.remote or ""
        body = request.content if request.body_exists else None
        try:
            async with request.app["session"].request(request.method, cfg.upstream + request.path_qs,
                                                      headers=headers, data=body, allow_redirects=False) as up:
                reply = web.StreamResponse(status=up.status, reason=up.reason)
                for k, v in up.headers.items():
                    if k.lower() not in DROP_RESPONSE:
                        reply.headers.add(k, v)
                if up.content_length is not None:
                    reply.content_length = up.content_length
                await reply.prepare(request)
                async for chunk in up.content.iter_chunked(CHUNK):
                    await reply.write(chunk)
                await reply.write_eof()
                return reply
        except (client_exceptions.ClientConnectorError, client_exceptions.ServerDisconnectedError) as e:
            log.warning("TorchServe unreachable: %s", e)
            return error(503, "ServiceUnavailable", "the model server is not reachable; retry shortly",
                         headers={"Retry-After": "5"})
        except TimeoutError:
            return error(504, "GatewayTimeout", f"the model server sent nothing for {cfg.read_timeout:.0f} s")

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


async def serve(cfg: GatewayConfig, keys: KeyRing) -> None:
    runner = web.AppRunner(make_app(cfg, keys), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, cfg.host, cfg.port, shutdown_timeout=60)
    await site.start()
    log.info("gateway on %s:%d → %s (%d keys)", cfg.host, cfg.port, cfg.upstream, len(keys.keys))
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    await done.wait()
    log.info("stopping: finishing requests in flight")
    await runner.cleanup()  # stops listening, waits for requests in flight (shutdown_timeout)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        cfg = GatewayConfig.from_env()
        keys = KeyRing(cfg.keys_dir, cfg.reload_s)
    except ConfigError as e:
        print(f"ts_gateway: {e}", file=sys.stderr)
        return 2
    asyncio.run(serve(cfg, keys))
    return 0


if __name__ == "__main__":
    sys.exit(main())
