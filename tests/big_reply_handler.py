"""A TorchServe handler that answers with as many bytes as asked: the front's size tests use it.

The body is ``<size>:<kind>`` in ASCII; the reply is ``size`` bytes: a PNG signature followed by
zeros (``png``), zeros only (``raw``); for ``error`` a node's JSON error with status ``size``; for
``sleep`` a small PNG after ``size`` milliseconds.
Used both as a model (/predictions) and as the single node of a workflow (/wfpredict).
"""

from __future__ import annotations

import json
import time

PNG = b"\x89PNG\r\n\x1a\n"


def handle(data, context):
    if data is None:  # TorchServe's load-time call
        return None
    # a reply faster than TorchServe's workflow executor attaches its promise is lost (see
    # handlers/base.py, WORKFLOW_MIN_REPLY_S): never answer in under 50 ms
    time.sleep(0.05)
    out = []
    for row in data:
        body = row.get("body") or row.get("data") or b""
        if isinstance(body, str):  # TorchServe decodes text/* bodies
            body = body.encode()
        size, _, kind = bytes(body).decode("ascii", errors="replace").partition(":")
        n = int(size)
        if kind == "sleep":
            time.sleep(n / 1000)
            out.append(PNG + bytes(8))
        elif kind == "error":
            out.append(json.dumps({"code": n, "type": "Refused", "message": "refused on request"}).encode())
        elif kind == "png":
            reply = bytearray(n)
            reply[: len(PNG)] = PNG
            out.append(bytes(reply))
        else:
            out.append(bytes(n))
    return out
