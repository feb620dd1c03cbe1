"""A TorchServe handler that computes nothing: the floor of what a request costs to serve.

`make bench` sends it bodies and asks for replies of the sizes a real endpoint sees, so the time
left over is TorchServe's own: HTTP in and out, the queue, the frontend-to-worker socket both ways,
and the worker's message handling. The body's first 8 bytes give the reply size (big-endian); the
reply is that many bytes.
"""

from __future__ import annotations

import struct


def handle(data, context):
    if data is None:  # TorchServe's load-time call
        return None
    out = []
    for row in data:
        body = row.get("body") or row.get("data") or b""
        size = struct.unpack(">Q", bytes(body[:8]))[0] if len(body) >= 8 else 0
        out.append(b"\x00" * size)
    return out
