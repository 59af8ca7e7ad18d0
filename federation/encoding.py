"""The JSON encoding of everything members sign: one canonical form, one strict reader.

Canonical JSON is keys sorted, no whitespace, ASCII only (non-ASCII as \\u
escapes). The reader accepts a JSON object of bounded size with integers but
no floats or NaN/Infinity, and raises ValueError with a short reason that
callers put into their own error class.
"""

from __future__ import annotations

import json
from typing import Any


def canonical_json(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def load_json_object(data: bytes, *, limit: int) -> dict[str, Any]:
    """The JSON object in `data`; ValueError("not bytes, or larger than N bytes" |
    "not valid JSON" | "expected a JSON object") otherwise."""
    if not isinstance(data, bytes) or len(data) > limit:
        raise ValueError(f"not bytes, or larger than {limit} bytes")
    try:
        obj = json.loads(data.decode("utf-8"), parse_float=_refuse, parse_constant=_refuse)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ValueError("not valid JSON") from None
    if not isinstance(obj, dict):
        raise ValueError("expected a JSON object")
    return obj


def _refuse(_text: str) -> Any:
    raise ValueError("numbers must be integers")
