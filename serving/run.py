"""`make run`: build the archives if needed, start TorchServe, register `restore`, start the nginx
front, start the bot.

TorchServe listens on loopback with the repository's ``config.properties`` (inference on 8090);
the nginx front (serving/proxy.py) takes the inference port clients use (8080). With
``PIX2PIX_INFERENCE_KEYS_DIR`` set to a directory of key files the front asks for one of them
(``Authorization: Bearer <key>``); unset, the loopback API is open. The bot starts too when
``TELEGRAM_BOT_TOKEN`` is set.  Ctrl-C (or SIGTERM) stops the bot first (it finishes the jobs in
flight), then the front (it finishes the requests in flight), then TorchServe and its workers.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from restoration.names import (
    COLORIZE,
    ENV_BOT_TOKEN,
    ENV_TORCHSERVE_URL,
    INFERENCE_PORT,
    MANAGEMENT_PORT,
    METRICS_PORT,
    MODELS,
    TORCHSERVE_INFERENCE_PORT,
    WORKFLOW_RESTORE,
)
from serving.archive import DEFAULT_WEIGHTS, ENV_VARS, build_all
from serving.proxy import ENV_KEYS_DIR, Proxy
from serving.server import ROOT, TorchServe, read_properties


def archives_stale(store: Path, sources: list[Path]) -> bool:
    """True when an archive is missing or older than the code or weights it is built from."""
    wanted = [store / f"{m}.mar" for m in MODELS] + [store / f"{WORKFLOW_RESTORE}.war"]
    if not all(p.exists() for p in wanted):
        return True
    oldest = min(p.stat().st_mtime for p in wanted)
    newest_src = max(f.stat().st_mtime for src in sources for f in src.rglob("*") if f.is_file())
    return newest_src > oldest


def curl_lines(url: str, key: bool = False) -> str:
    auth = "-H 'Authorization: Bearer <key>' " if key else ""
    return "\n".join([
        "Try it (the reply is a PNG; add -H 'Accept: image/jpeg' for JPEG; -f fails on a refusal):",
        f"  curl -f {auth}--data-binary @photo.jpg {url}/predictions/{COLORIZE} -o colour.png",
        f"  curl -f {auth}--data-binary @photo.jpg {url}/predictions/sr_x2 -o x2.png",
        f"  curl -f {auth}--data-binary @photo.jpg {url}/predictions/sr_x4 -o x4.png",
        f"  curl -f {auth}--data-binary @photo.jpg {url}/wfpredict/{WORKFLOW_RESTORE} -o restored.png",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--store", default=str(ROOT / "model_store"))
    parser.add_argument("--workdir", default=str(ROOT / "logs" / "torchserve"))
    parser.add_argument("--rebuild", action="store_true", help="rebuild the archives even if they look fresh")
    parser.add_argument("--no-bot", action="store_true", help="do not start the bot even if a token is set")
    args = parser.parse_args(argv)

    store = Path(args.store)
    sources = {name: os.environ.get(ENV_VARS[name]) or str(DEFAULT_WEIGHTS[name]) for name in MODELS}
    local = [Path(p) for p in sources.values() if Path(p).is_dir()]
    if args.rebuild or archives_stale(store, local + [ROOT / "restoration", ROOT / "handlers", ROOT / "serving"]):
        print("building archives ...", flush=True)
        build_all(store, sources)

    props = read_properties(ROOT / "config.properties")
    ts = TorchServe(model_store=store, workdir=Path(args.workdir), inference_port=TORCHSERVE_INFERENCE_PORT,
                    management_port=MANAGEMENT_PORT, metrics_port=METRICS_PORT,
                    overrides={k: v for k, v in props.items() if k.endswith("_address")})
    keys_dir = os.environ.get(ENV_KEYS_DIR) or None
    front = Proxy.local(ROOT / "logs" / "nginx", listen_port=INFERENCE_PORT, upstream_port=ts.inference_port,
                        keys_dir=Path(keys_dir).resolve() if keys_dir else None)
    stopping = False

    def _stop(signum, frame):  # noqa: ARG001
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    print(f"starting TorchServe (log: {ts.log_path}) ...", flush=True)
    bot: subprocess.Popen | None = None
    t0 = time.monotonic()
    try:
        ts.start(timeout=300)
        front.start()
        print(f"TorchServe ready ({time.monotonic() - t0:.0f} s): models {', '.join(MODELS)} and workflow "
              f"{WORKFLOW_RESTORE} on {front.url} (nginx front; TorchServe itself on {ts.inference_url})")
        print(f"keys: {keys_dir} ({ENV_KEYS_DIR})" if keys_dir else f"no inference key needed (set {ENV_KEYS_DIR} to ask for one)")
        print(f"metrics: {ts.metrics_url}/metrics; access log: {front.access_log}")
        print(curl_lines(front.url, key=bool(keys_dir)), flush=True)
        if os.environ.get(ENV_BOT_TOKEN) and not args.no_bot:
            env = {**os.environ, ENV_TORCHSERVE_URL: os.environ.get(ENV_TORCHSERVE_URL, front.url)}
            bot = subprocess.Popen([sys.executable, "-m", "bot"], cwd=ROOT, env=env)
            print("bot started (python -m bot)", flush=True)
        else:
            print(f"bot not started: set {ENV_BOT_TOKEN} to start it too", flush=True)
        print("Ctrl-C stops everything.", flush=True)
        while not stopping:
            if ts.proc is not None and ts.proc.poll() is not None:
                print(f"TorchServe exited ({ts.proc.returncode}); see {ts.log_path}", file=sys.stderr)
                return 1
            if front.proc is not None and front.proc.poll() is not None:
                print(f"nginx exited ({front.proc.returncode}); see {front.error_log}", file=sys.stderr)
                return 1
            if bot is not None and bot.poll() is not None:
                print(f"bot exited ({bot.returncode})", file=sys.stderr)
                bot = None
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        # A second Ctrl-C must not interrupt the shutdown and leave workers behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        print("stopping ...", flush=True)
        if bot is not None and bot.poll() is None:
            bot.send_signal(signal.SIGTERM)
            try:
                bot.wait(60)
            except subprocess.TimeoutExpired:
                bot.kill()
        front.stop()
        ts.stop()
        print("stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
