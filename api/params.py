"""Query parameters several routes share."""

from __future__ import annotations

from flask import request

from batchgate.errors import RequestError


def limit_arg(default: int, maximum: int) -> int:
    """``?limit=``: an integer from 1 to ``maximum`` (``default`` when absent)."""
    try:
        limit = int(request.args.get("limit", default))
    except ValueError:
        raise RequestError("limit must be an integer", param="limit") from None
    if not 1 <= limit <= maximum:
        raise RequestError(f"limit must be between 1 and {maximum}", param="limit")
    return limit


MAX_POSITION = 2**53
"""Positions in a job's results are far below this; Redis refuses indexes past 64 bits."""


def position_arg(name: str = "after") -> int:
    """``?after=<position>``: an integer from -1 (the start) to :data:`MAX_POSITION`."""
    try:
        position = int(request.args.get(name, -1))
    except ValueError:
        raise RequestError(f"{name} must be an integer", param=name) from None
    if not -1 <= position <= MAX_POSITION:
        raise RequestError(f"{name} must be between -1 and {MAX_POSITION}", param=name)
    return position
