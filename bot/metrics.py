"""The bot's Prometheus metrics, served by prometheus-client on BOT_METRICS_PORT."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

UPDATES = Counter("bot_updates_total", "Telegram updates received, by type", ["type"])
JOBS = Counter("bot_jobs_total", "Images processed, by mode and outcome", ["mode", "outcome"])
JOB_SECONDS = Histogram(
    "bot_job_seconds", "Time from accepting a job to its last result sent, by mode", ["mode"],
    buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600),
)
QUEUE_DEPTH = Gauge("bot_queue_depth", "Jobs accepted and waiting to start")
JOBS_IN_FLIGHT = Gauge("bot_jobs_in_flight", "Jobs being processed now")
JOBS_RESUMED = Counter("bot_jobs_resumed_total", "Jobs taken back from the job store at start-up")
TORCHSERVE_SECONDS = Histogram(
    "bot_torchserve_request_seconds", "TorchServe prediction call latency, by model or workflow", ["target"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300),
)
TORCHSERVE_ERRORS = Counter(
    "bot_torchserve_errors_total", "TorchServe calls that did not give an image, by target and status",
    ["target", "status"],
)
TELEGRAM_ERRORS = Counter(
    "bot_telegram_errors_total", "Telegram Bot API errors, by method and kind", ["method", "kind"],
)
TELEGRAM_RETRIES = Counter("bot_telegram_retries_total", "Telegram API calls sent again, by method", ["method"])


def serve(port: int, host: str) -> None:
    """Serve /metrics in a background thread."""
    start_http_server(port, addr=host)
