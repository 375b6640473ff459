"""``batchgate embed``'s input: ``.txt`` (a chunk per line) or ``.jsonl`` (a string, or an
object with ``text`` or ``input`` and an optional ``id``), checked and cut into parts, read
a part at a time."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from batchgate.embed_state import EmbedError

FORMATS = {".txt": False, ".jsonl": True}
"""Input suffix -> whether each line is JSON."""


def parse_chunk(raw: bytes, number: int, jsonl: bool) -> tuple[str, Any]:
    """``(text, id)`` of input line ``number`` (1-based); ``id`` is None when not given."""
    line = raw.removesuffix(b"\n").removesuffix(b"\r")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise EmbedError(f"line {number}: not UTF-8 text") from None
    if not jsonl:
        if not text:
            raise EmbedError(f"line {number}: empty line (each line must be a chunk of text)")
        return text, None
    try:
        value = json.loads(text)
    except ValueError:
        raise EmbedError(f"line {number}: not JSON") from None
    chunk_id = None
    if isinstance(value, dict):
        chunk_id = value.get("id")
        value = value["text"] if "text" in value else value.get("input")
    if not isinstance(value, str) or not value:
        raise EmbedError(f'line {number}: needs a non-empty string, or an object with a '
                         f'non-empty "text" or "input" string')
    return value, chunk_id


def input_format(path: Path) -> bool:
    """Whether ``path`` is JSONL (True) or plain text (False), from its suffix."""
    try:
        return FORMATS[path.suffix.lower()]
    except KeyError:
        raise EmbedError(f"{path}: the input must be a .txt or .jsonl file") from None


def plan_parts(path: Path, part_size: int) -> tuple[int, list[int]]:
    """Check every line of the input; its line count and the byte offset of each part."""
    jsonl, total, offsets, position = input_format(path), 0, [], 0
    with path.open("rb") as lines:
        for raw in lines:
            if total % part_size == 0:
                offsets.append(position)
            try:
                parse_chunk(raw, total + 1, jsonl)
            except EmbedError as exc:
                raise EmbedError(f"{path}: {exc.message}") from None
            position += len(raw)
            total += 1
    if total == 0:
        raise EmbedError(f"{path}: the input is empty")
    return total, offsets


def read_part(path: Path, offset: int, first: int, count: int) -> Iterator[tuple[int, str, Any]]:
    """``(index, text, id)`` of ``count`` lines from byte ``offset``, which is line ``first``."""
    jsonl = input_format(path)
    with path.open("rb") as lines:
        lines.seek(offset)
        for index in range(first, first + count):
            raw = lines.readline()
            if not raw:
                raise EmbedError(f"{path}: ends before line {index + 1}; was it changed?")
            yield index, *parse_chunk(raw, index + 1, jsonl)
