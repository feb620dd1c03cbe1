"""The replies the service sent before the core package existed, byte for byte.

The hashes below were recorded by serving the same tiny weights (tests/tiny_models.py: the Pix2Pix
UNet colouriser and the two EDSRs, seeded) with the handlers of commit 532aed9, the last one before
the model code moved from handlers/ and training/ into restoration/, on a real TorchServe, for the
three inputs built here. ×2 and ×4 are asked of the session's TorchServe (same weights, same seeds);
the Pix2Pix colouriser through the library, which gives the served bytes (test_serving_integration's
test_library_gives_the_served_bytes) and is the same code the colorize handler runs.

If a change of PyTorch or of the CPU's kernels moves a pixel, these hashes must be re-recorded from
that commit, not edited to match: the point is that refactoring changed no reply.
"""

from __future__ import annotations

import hashlib

import pytest
import requests

from tests.conftest import encode, photo

BEFORE = {
    "colorize/png_160x120_s0": "d5116a9b716d2f986190d6ad0537bd88d1b4dda650bc1a6249012cbb0adf9153",
    "colorize/jpeg_97x61_s3": "e59edfa8a69a27e51ff349ef20b09403036bac171592c807c82e55f03d9c9bbb",
    "colorize/grey_png_64x80_s5": "832c52dddcfa2b822832b6be502f3f129071f5eae7a1e11d5b0af81f7ae768ed",
    "sr_x2/png_160x120_s0": "0523175fb30d71ca2cdb85ef6f03bda36f2d86c46fcea747dc1528256c5a52b0",
    "sr_x2/jpeg_97x61_s3": "a421d24ab31528c321ec046f028769e9bb19bd3424de62988d9403da27f7c5e9",
    "sr_x2/grey_png_64x80_s5": "defa393701318d4295ca046c6b8f2b352c88647a8e2c2ef5388181f6b50b799c",
    "sr_x4/png_160x120_s0": "c4cd7dcb322102f94e20800db6fff2dab0db3213e6968dace4126016d001bada",
    "sr_x4/jpeg_97x61_s3": "e0630411352964c28aae67444b64a1290fa9930f9da563c408122b00675f755a",
    "sr_x4/grey_png_64x80_s5": "f7b01cf50e64ecba4719d9a6d1fda302082e6503cbb77eefb9db82db51d60519",
}


def inputs() -> dict[str, tuple[bytes, str]]:
    return {
        "png_160x120_s0": (encode(photo(160, 120, seed=0), "PNG"), "image/png"),
        "jpeg_97x61_s3": (encode(photo(97, 61, seed=3), "JPEG", quality=85), "image/jpeg"),
        "grey_png_64x80_s5": (encode(photo(64, 80, seed=5).convert("L"), "PNG"), "image/png"),
    }


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("model", ["sr_x2", "sr_x4"])
def test_sr_replies_unchanged(torchserve, model):
    for key, (body, ctype) in inputs().items():
        r = requests.post(torchserve.inference_url + f"/predictions/{model}", data=body,
                          headers={"Content-Type": ctype}, timeout=120)
        assert r.status_code == 200, r.text
        assert sha(r.content) == BEFORE[f"{model}/{key}"], key


def test_pix2pix_colorize_replies_unchanged(tiny_weights):
    from restoration.api import Restorer

    lib = Restorer(dirs={"colorize": tiny_weights["colorize_pix2pix"]})
    for key, (body, _) in inputs().items():
        assert sha(lib.process("colorize", body)) == BEFORE[f"colorize/{key}"], key
