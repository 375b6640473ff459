"""Reading callers' JSON: request bodies and batch input lines.

``json.loads`` accepts two things the rest of batchgate cannot carry: nesting deep enough to
exhaust the stack (``RecursionError``), and ``\\ud800``-style escapes of lone surrogates,
which decode into a ``str`` that no UTF-8 encoder (Redis', httpx', ours) will write. Both are
the caller's mistake, so both become the ``ValueError`` of any other malformed JSON here,
before anything is stored or sent.
"""

from __future__ import annotations

import json
import re
from typing import Any

_LONE_SURROGATE = re.compile(
    r"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    r"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}")
"""A surrogate escape not in a high-low pair. Only a hint (an escaped backslash before
``u`` fools it): when it matches, the decoded value is checked for real."""


def loads(text: str) -> Any:
    """``text`` as JSON; ValueError for malformed JSON, too deep a nesting or a lone
    surrogate."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise ValueError("the JSON is nested too deeply") from None
    if _LONE_SURROGATE.search(text):
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("the JSON holds a lone surrogate escape (\\ud800 to "
                             "\\udfff): it is not valid Unicode") from None
    return value
