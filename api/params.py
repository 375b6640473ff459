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
