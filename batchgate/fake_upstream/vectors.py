"""Deterministic embedding vectors: the same input text always gets the same unit vector.

Components come from SHAKE-128 of the text (C speed, any length, no numpy), scaled to
[-1, 1) and normalised to unit length. Values are rounded to float32, so the ``float`` and
``base64`` encodings of one vector are bit-for-bit the same numbers: a gateway that asks its
upstream for base64 and answers its caller in floats can be checked for exact equality.
"""

from __future__ import annotations

import base64
import hashlib
import math
import sys
from array import array
from collections.abc import Sequence


def embedding_vector(text: str, dim: int) -> list[float]:
    """The unit vector (float32 precision) of ``text`` in ``dim`` dimensions."""
    raw = array("h", hashlib.shake_128(text.encode("utf-8", "surrogatepass")).digest(2 * dim))
    norm = math.hypot(*raw)
    if norm == 0:  # all-zero digest: astronomically unlikely, but a vector must stay unit
        return [1.0] + [0.0] * (dim - 1)
    return array("f", [x / norm for x in raw]).tolist()


def tokens_key(token_ids: Sequence[int]) -> str:
    """The text that stands for a pre-tokenized input (a list of token ids) when hashing."""
    return "tokens:" + ",".join(map(str, token_ids))


def to_base64(vector: Sequence[float]) -> str:
    """``vector`` as OpenAI's ``encoding_format: base64``: little-endian float32, base64."""
    packed = array("f", vector)
    if sys.byteorder == "big":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode("ascii")


def from_base64(data: str) -> list[float]:
    """Decode an ``encoding_format: base64`` embedding back into floats."""
    packed = array("f")
    packed.frombytes(base64.b64decode(data))
    if sys.byteorder == "big":
        packed.byteswap()
    return packed.tolist()
