"""Names every part of the service relies on: models, workflow, ports, environment variables.

One source of truth: the handlers, the archive and run scripts, the bot, the tests and the
Kubernetes consistency checks read these values from here.
"""

from __future__ import annotations

# Models served by TorchServe and the workflow that chains them.
REPAIR = "repair"
COLORIZE = "colorize"
SR_X2 = "sr_x2"
SR_X4 = "sr_x4"
MODELS = (REPAIR, COLORIZE, SR_X2, SR_X4)
WORKFLOW_RESTORE = "restore"
#: the restore workflow's nodes, in order (serving/restore.yaml)
WORKFLOW_NODES = (REPAIR, COLORIZE, SR_X2)
SR_SCALES = {SR_X2: 2, SR_X4: 4}

# Ports: the inference API clients use (the nginx front), TorchServe's own inference API behind it
# (loopback only), management, metrics, and the bot's metrics.
INFERENCE_PORT = 8080
TORCHSERVE_INFERENCE_PORT = 8090
MANAGEMENT_PORT = 8081
METRICS_PORT = 8082
BOT_METRICS_PORT = 9100

# Environment variables.
ENV_BOT_TOKEN = "TELEGRAM_BOT_TOKEN"
ENV_TELEGRAM_API_BASE = "TELEGRAM_API_BASE"
ENV_TORCHSERVE_URL = "TORCHSERVE_URL"
ENV_TORCHSERVE_TOKEN = "TORCHSERVE_TOKEN"
ENV_BOT_METRICS_PORT = "BOT_METRICS_PORT"
ENV_BOT_ALLOWED_USERS = "BOT_ALLOWED_USERS"

DEFAULT_TELEGRAM_API_BASE = "https://api.telegram.org"
DEFAULT_TORCHSERVE_URL = f"http://127.0.0.1:{INFERENCE_PORT}"


def prediction_path(target: str) -> str:
    """URL path that serves a model or the workflow (``/predictions/sr_x2``, ``/wfpredict/restore``)."""
    if target == WORKFLOW_RESTORE:
        return f"/wfpredict/{WORKFLOW_RESTORE}"
    if target not in MODELS:
        raise ValueError(f"unknown model {target!r}; expected one of {MODELS + (WORKFLOW_RESTORE,)}")
    return f"/predictions/{target}"
