"""Structure-aware mutations for the fuzz tests (issue 9): start from a valid object, change it.

``mutated_bytes(seed)`` applies one to four byte-level edits to a valid encoding: a flipped
bit, a byte set, bytes inserted or deleted, a truncation, a range or a line duplicated,
deleted or swapped, a number replaced (by 0, -1, 2**63, 2**64, a 5,000-digit number, a
float, a Unicode digit ...), a huge run of bytes, or an odd sequence (NUL, invalid UTF-8,
an encoded surrogate, a BOM, a right-to-left override, a decomposed accent, an em dash).

``mutated_json(seed)`` edits a decoded JSON document the same way, one to three times: a
value replaced by another JSON value (of another type, a huge or negative integer, an odd
string), a field deleted, added or renamed, a list item duplicated or dropped, two values
swapped, a string lengthened, cut or given an odd character, a value nested deeply.

Both keep the seed unchanged; a mutation may give back the seed itself (a property test
must then expect what the seed gives).
"""

from __future__ import annotations

import copy
import re
from typing import Any, Final

from hypothesis import strategies as st

__all__ = [
    "HUGE_INTS",
    "ODD_BYTES",
    "ODD_STRINGS",
    "json_values",
    "mutated_bytes",
    "mutated_json",
    "mutated_text",
]

#: Byte sequences that break naive decoders: NUL, invalid or overlong UTF-8, an encoded
#: surrogate, a BOM, a right-to-left override, NBSP, a decomposed accent, line ends, an em
#: dash (the signed note's signature prefix), JSON escapes of NUL and of a lone surrogate.
ODD_BYTES: Final[tuple[bytes, ...]] = (
    b"\x00",
    b"\xff",
    b"\xc0\x80",
    b"\xed\xa0\x80",
    b"\xef\xbb\xbf",
    "\u202e".encode(),
    "\u00a0".encode(),
    "e\u0301".encode(),
    b"\n",
    b"\r\n",
    b"\t",
    b"\n\n",
    "\u2014 ".encode(),
    "\U0001f600".encode(),
    b"\\u0000",
    b"\\ud800",
    b'"',
    b"\\",
    b"{",
    b"]",
    b"+",
    b"=",
)
#: Strings that break naive validators.
ODD_STRINGS: Final[tuple[str, ...]] = (
    "",
    " ",
    "\x00",
    "\ud800",
    "\udcff",
    "\u202e",
    "\ufeff",
    "\u00a0",
    "e\u0301",
    "\n",
    "\r",
    "\t",
    "\x7f",
    "\x85",
    "\u2028",
    "\u2014 ",
    "\U0001f600",
    "\u0663",  # ARABIC-INDIC DIGIT THREE
    "\u00b2",  # SUPERSCRIPT TWO: isdigit() but not int()
    "../..",
    "/",
    "\\",
    "C:",
    "NaN",
    "-0",
    "1e400",
    "a" * 300,
)
#: Integers at the edges: of bool, of 32 and 64 bits, far beyond them.
HUGE_INTS: Final[tuple[int, ...]] = (
    0,
    1,
    -1,
    2**31 - 1,
    2**31,
    2**32,
    2**53 + 1,
    2**63 - 1,
    2**63,
    2**64 - 1,
    2**64,
    -(2**63),
    10**100,
    10**4000,
)
#: What a number in an encoding is replaced by (as bytes).
_NUMBER_TEXTS: Final[tuple[bytes, ...]] = (
    b"0",
    b"00",
    b"-0",
    b"-1",
    b"1",
    b"2147483648",
    b"4294967296",
    b"9223372036854775807",
    b"9223372036854775808",
    b"18446744073709551615",
    b"18446744073709551616",
    b"9" * 30,
    b"9" * 5000,
    b"1.5",
    b"1e400",
    b"NaN",
    b"Infinity",
    b"0x10",
    "\u0663".encode(),
    "\u00b2".encode(),
)
_NUMBER: Final = re.compile(rb"[0-9]+")
_MAX_LONG: Final = 1_000_000
_HUGE_RUNS: Final[tuple[bytes, ...]] = (
    b"A" * 100_000,
    b"[" * 5000,
    b"9" * 5000,
    b"\x00" * 70_000,
    b"\n" * 1000,
)


def json_values(*, max_leaves: int = 8) -> st.SearchStrategy[Any]:
    """Any value a JSON decoder can return (and floats, which the strict readers refuse)."""
    leaves = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.sampled_from(HUGE_INTS),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=20),
        st.sampled_from(ODD_STRINGS),
    )
    return st.recursive(
        leaves,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(st.text(max_size=10), children, max_size=4),
        ),
        max_leaves=max_leaves,
    )


def _lines(data: bytes) -> list[bytes]:
    return data.splitlines(keepends=True)


@st.composite
def _byte_edit(draw: st.DrawFn, data: bytes) -> bytes:
    n = len(data)
    kind = draw(
        st.sampled_from(
            (
                "flip",
                "set",
                "insert",
                "delete",
                "truncate",
                "duplicate",
                "line_dup",
                "line_del",
                "line_swap",
                "number",
                "huge",
                "odd",
                "swap",
            )
        )
    )
    pos = draw(st.integers(0, n))
    if kind == "flip" and n:
        i = min(pos, n - 1)
        bit = 1 << draw(st.integers(0, 7))
        return data[:i] + bytes([data[i] ^ bit]) + data[i + 1 :]
    if kind == "set" and n:
        i = min(pos, n - 1)
        return data[:i] + bytes([draw(st.integers(0, 255))]) + data[i + 1 :]
    if kind == "insert":
        return data[:pos] + draw(st.binary(min_size=1, max_size=16)) + data[pos:]
    if kind == "delete":
        length = draw(st.integers(1, 64))
        return data[:pos] + data[pos + length :]
    if kind == "truncate":
        return data[:pos]
    if kind == "duplicate":
        length = draw(st.integers(1, 256))
        return data[: pos + length] + data[pos : pos + length] + data[pos + length :]
    if kind in ("line_dup", "line_del", "line_swap"):
        lines = _lines(data)
        if not lines:
            return data
        i = draw(st.integers(0, len(lines) - 1))
        if kind == "line_dup":
            lines.insert(i, lines[i])
        elif kind == "line_del":
            del lines[i]
        else:
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        return b"".join(lines)
    if kind == "number":
        found = list(_NUMBER.finditer(data))
        if not found:
            return data
        m = found[draw(st.integers(0, len(found) - 1))]
        return data[: m.start()] + draw(st.sampled_from(_NUMBER_TEXTS)) + data[m.end() :]
    if kind == "huge":
        return data[:pos] + draw(st.sampled_from(_HUGE_RUNS)) + data[pos:]
    if kind == "odd":
        return data[:pos] + draw(st.sampled_from(ODD_BYTES)) + data[pos:]
    if kind == "swap" and n >= 2:
        length = draw(st.integers(1, max(1, n // 4)))
        i = draw(st.integers(0, n - length))
        j = draw(st.integers(0, n - length))
        a, b = sorted((i, j))
        if b < a + length:
            return data
        return (
            data[:a]
            + data[b : b + length]
            + data[a + length : b]
            + data[a : a + length]
            + (data[b + length :])
        )
    return data


@st.composite
def mutated_bytes(draw: st.DrawFn, seed: bytes, max_edits: int = 4) -> bytes:
    """`seed` with one to `max_edits` byte-level edits (see the module docstring)."""
    data = seed
    for _ in range(draw(st.integers(1, max_edits))):
        data = draw(_byte_edit(data))
    return data


@st.composite
def mutated_text(draw: st.DrawFn, seed: str, max_edits: int = 4) -> str:
    """`seed` edited as UTF-8 bytes, decoded back with invalid bytes as lone surrogates."""
    raw = draw(mutated_bytes(seed.encode("utf-8"), max_edits))
    return raw.decode("utf-8", "surrogateescape")


def json_paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into `value` (keys and indexes), the root `()` first."""
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += json_paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += json_paths(v, (*prefix, i))
    return out


def _get(root: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        root = root[key]
    return root


def _set(root: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    _get(root, path[:-1])[path[-1]] = value
    return root


def _keys(value: Any) -> list[str]:
    """Every object key in `value`: added fields are then fields of the schema, misplaced."""
    keys: list[str] = []
    for path in json_paths(value):
        keys += [p for p in path if isinstance(p, str)]
    return sorted(set(keys))


@st.composite
def _string_edit(draw: st.DrawFn, s: str) -> str:
    kind = draw(st.sampled_from(("append", "cut", "odd", "case", "long", "replace")))
    if kind == "append":
        return s + draw(st.text(min_size=1, max_size=4))
    if kind == "cut":
        return s[: draw(st.integers(0, max(0, len(s) - 1)))]
    if kind == "odd":
        i = draw(st.integers(0, len(s)))
        return s[:i] + draw(st.sampled_from(ODD_STRINGS)) + s[i:]
    if kind == "case":
        return s.swapcase()
    if kind == "long":  # at most about 1 MB, however often it is applied
        times = draw(st.sampled_from((2, 50, 3000)))
        return s * max(1, min(times, _MAX_LONG // max(1, len(s))))
    return str(draw(st.sampled_from(ODD_STRINGS)))


@st.composite
def _json_edit(draw: st.DrawFn, doc: Any, names: list[str]) -> Any:
    paths = json_paths(doc)
    path = draw(st.sampled_from(paths))
    value = _get(doc, path)
    kind = draw(
        st.sampled_from(
            (
                "replace",
                "delete",
                "add",
                "rename",
                "list_dup",
                "swap",
                "string",
                "number",
                "wrap",
                "deep",
                "stringify",
            )
        )
    )
    if kind == "replace":
        return _set(doc, path, draw(json_values()))
    if kind == "delete" and path:
        parent = _get(doc, path[:-1])
        del parent[path[-1]]
        return doc
    if kind == "add" and isinstance(value, dict):
        key = draw(st.sampled_from(names) | st.text(max_size=8) | st.sampled_from(ODD_STRINGS))
        value[key] = draw(json_values(max_leaves=3))
        return doc
    if kind == "rename" and isinstance(value, dict) and value:
        old = draw(st.sampled_from(sorted(value)))
        new = draw(st.sampled_from(names) | st.sampled_from(ODD_STRINGS))
        value[new] = value.pop(old)
        return doc
    if kind == "list_dup" and isinstance(value, list) and value:
        i = draw(st.integers(0, len(value) - 1))
        if draw(st.booleans()):
            value.insert(i, copy.deepcopy(value[i]))
        else:
            del value[i]
        return doc
    if kind == "swap":
        other = draw(st.sampled_from(paths))
        # Neither path may hold the other: swapping a value with its own part makes a cycle.
        if path[: len(other)] != other and other[: len(path)] != path:
            a, b = copy.deepcopy(value), copy.deepcopy(_get(doc, other))
            doc = _set(doc, path, b)
            return _set(doc, other, a)
        return doc
    if kind == "string" and isinstance(value, str):
        return _set(doc, path, draw(_string_edit(value)))
    if kind == "number" and isinstance(value, int) and not isinstance(value, bool):
        delta = draw(st.sampled_from((1, -1, -value - 1, -2 * value)) | st.sampled_from(HUGE_INTS))
        return _set(doc, path, value + delta if draw(st.booleans()) else delta)
    if kind == "wrap":
        return _set(doc, path, draw(st.sampled_from(([value], {"": value}, None, True, 0))))
    if kind == "deep":
        deep: Any = value
        for _ in range(draw(st.sampled_from((40, 200)))):
            deep = [deep]
        return _set(doc, path, deep)
    if kind == "stringify":
        return _set(doc, path, repr(value))
    return doc


@st.composite
def mutated_json(draw: st.DrawFn, seed: Any, max_edits: int = 3) -> Any:
    """A deep copy of the JSON document `seed` with one to `max_edits` edits."""
    doc = copy.deepcopy(seed)
    names = _keys(seed)
    for _ in range(draw(st.integers(1, max_edits))):
        doc = draw(_json_edit(doc, names))
    return doc
