"""What the fuzz tests share (issue 9): how many inputs each tries, a time limit per
input, and the tally that the long run (`python -m bench.fuzz`) reports.

A fuzz test is marked `fuzz`, takes its settings from `fuzz_settings()` and wraps the
handling of each generated input in `trial(target)`, then calls `outcome(...)` with what
became of it:

    @pytest.mark.fuzz
    @fuzz_settings()
    @given(st.binary())
    def test_fuzz_note(data: bytes) -> None:
        with trial("crypto.note.parse_note") as t:
            try:
                parse_note(data)
            except NoteError:
                t.outcome("NoteError")
            else:
                t.outcome("accepted")

The default run tries `DEFAULT_EXAMPLES` inputs per test; `COMPACT_FUZZ_EXAMPLES`
sets another number (the long run's). An input that takes longer than
`COMPACT_FUZZ_HANG_SECONDS` (10 s by default) fails its test as a hang. With
`COMPACT_FUZZ_REPORT` set to a folder, each pytest process writes its tally there
when it ends (tests/conftest.py), and `bench.fuzz` adds them up.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar, cast

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from node.fedservice import is_repeated
from tests.fuzz_mutations import ODD_STRINGS, mutated_bytes

M = TypeVar("M", bound=Message)

EXAMPLES_ENV = "COMPACT_FUZZ_EXAMPLES"
HANG_ENV = "COMPACT_FUZZ_HANG_SECONDS"
REPORT_ENV = "COMPACT_FUZZ_REPORT"
#: Inputs per fuzz test in the default run: enough to reach past the first parse error
#: of every target, few enough to keep the whole suite inside its time budget.
DEFAULT_EXAMPLES = 40


def examples(scale: float = 1.0) -> int:
    """Inputs per test: `COMPACT_FUZZ_EXAMPLES` (or the default) times `scale`, at least 1.

    `scale` lets a target whose inputs are expensive (a real node's round trip plus a
    look at its database) try fewer than a pure parser."""
    raw = os.environ.get(EXAMPLES_ENV, "")
    base = int(raw) if raw.strip() else DEFAULT_EXAMPLES
    if base < 1:
        raise ValueError(f"{EXAMPLES_ENV} must be a positive whole number, not {raw!r}")
    return max(1, round(base * scale))


def hang_seconds() -> float:
    raw = os.environ.get(HANG_ENV, "")
    return float(raw) if raw.strip() else 10.0


def fuzz_settings(scale: float = 1.0) -> settings:
    """Hypothesis settings for a fuzz test. No deadline (a loaded CI machine is slow, and
    a real hang is caught by `trial`'s time limit instead); health checks about slow or
    large generation are off, since the inputs are meant to be large and varied. The
    rest (derandomisation on CI, the example database) comes from the active profile."""
    return settings(
        max_examples=examples(scale),
        deadline=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
            HealthCheck.function_scoped_fixture,
        ],
    )


class FuzzHang(AssertionError):
    """One input took longer than the time limit."""


@dataclass
class Tally:
    inputs: int = 0
    seconds: float = 0.0
    outcomes: Counter[str] = field(default_factory=Counter)

    def as_json(self) -> dict[str, Any]:
        return {
            "inputs": self.inputs,
            "seconds": round(self.seconds, 6),
            "outcomes": dict(sorted(self.outcomes.items())),
        }


#: Every target tried in this process: target name -> tally.
TALLY: dict[str, Tally] = {}


@dataclass
class Trial:
    target: str
    recorded: str | None = None

    def outcome(self, name: str) -> None:
        """What became of this input: "accepted", an error class, a status code."""
        self.recorded = name


def _hang(signum: int, frame: FrameType | None) -> None:
    raise FuzzHang(f"one input took longer than {hang_seconds():g} s ({HANG_ENV})")


@contextmanager
def trial(target: str) -> Iterator[Trial]:
    """Count one input against `target`, time it, and fail it if it runs past the limit.

    The limit is a SIGALRM timer, so it holds on the main thread only (where pytest and
    its workers run tests); elsewhere the input is counted and timed without a limit."""
    t = Trial(target)
    tally = TALLY.setdefault(target, Tally())
    main = threading.current_thread() is threading.main_thread()
    previous: Any = None
    if main:
        previous = signal.signal(signal.SIGALRM, _hang)
        signal.setitimer(signal.ITIMER_REAL, hang_seconds())
    started = time.perf_counter()
    try:
        yield t
    finally:
        if main:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        tally.inputs += 1
        tally.seconds += time.perf_counter() - started
        tally.outcomes[t.recorded or "raised"] += 1


def write_report(folder: Path, name: str) -> Path | None:
    """Write this process's tally as `folder/name.json` (nothing when nothing was tried)."""
    if not TALLY:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    body = {target: tally.as_json() for target, tally in sorted(TALLY.items())}
    path.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
    return path


# --- protobuf messages -----------------------------------------------------------------------

#: Strings that have broken software before: SQL and shell metacharacters, path traversal,
#: format strings, NUL and other control characters, Unicode that changes meaning on
#: normalisation, very long text. Mixed into every generated string field.
NASTY_STRINGS: tuple[str, ...] = (
    "",
    " ",
    "' OR '1'='1",
    "'; DROP TABLE incidents; --",
    '" OR ""="',
    "%",
    "_",
    "\\",
    "../../../../etc/passwd",
    "..\\..\\windows\\system32",
    "/etc/shadow",
    "file:///etc/passwd",
    "%s%s%s%n",
    "{0}{1}",
    "\x00",
    "a\x00b",
    "\r\n\r\n",
    "\u202e",
    "\ufeff",
    "\ud7ff\ue000",
    "ﬁ",
    "Å",
    "A\u030a",
    "😀" * 64,
    "x" * 10_000,
    "-1",
    "9" * 40,
    "NaN",
    "null",
    "[]",
    "{}",
)


def _sendable(text: str) -> bool:
    try:
        text.encode("utf-8")  # protobuf strings are UTF-8: lone surrogates cannot be sent
    except UnicodeEncodeError:
        return False
    return True


_SENDABLE_ODD = tuple(t for t in ODD_STRINGS if _sendable(t))


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    t = field.type
    if t == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t == FieldDescriptor.TYPE_STRING:
        return st.one_of(
            st.sampled_from(NASTY_STRINGS), st.sampled_from(_SENDABLE_ODD), st.text(max_size=200)
        )
    if t == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=2048)
    if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(allow_nan=True, allow_infinity=True, width=64 if t == 1 else 32)
    if t == FieldDescriptor.TYPE_ENUM:
        return st.integers(-(2**31), 2**31 - 1)
    bits = 64 if "64" in _TYPE_NAMES.get(t, "") else 32
    unsigned = t in (
        FieldDescriptor.TYPE_UINT32,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_FIXED32,
        FieldDescriptor.TYPE_FIXED64,
    )
    low, high = (0, 2**bits - 1) if unsigned else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    edges = sorted({low, high, 0, 1, high // 2, high // 2 + 1} | ({-1} if low < 0 else set()))
    return st.one_of(st.integers(0, 20), st.sampled_from(edges), st.integers(low, high))


_TYPE_NAMES = {
    getattr(FieldDescriptor, n): n for n in dir(FieldDescriptor) if n.startswith("TYPE_")
}


def messages(
    cls: type[M],
    hints: Mapping[str, st.SearchStrategy[Any]] | None = None,
    *,
    depth: int = 3,
) -> st.SearchStrategy[M]:
    """Messages of type `cls` with any subset of their fields set to generated values.

    Each field gets values of its wire type (edge integers, NASTY_STRINGS and any text,
    any bytes, nested messages down to `depth`); where `hints` names a field (by its name,
    at any depth), the realistic values it gives are mixed in, so that generated
    requests get past the first check and reach the code behind it."""
    hints = dict(hints or {})
    descriptor = cast(Descriptor, cls.DESCRIPTOR)
    return _message(descriptor, hints, depth).map(lambda kw: cls(**kw))


def _message(
    descriptor: Descriptor, hints: dict[str, st.SearchStrategy[Any]], depth: int
) -> st.SearchStrategy[dict[str, Any]]:
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for f in descriptor.fields:
        if f.type == FieldDescriptor.TYPE_MESSAGE:
            if depth <= 0:
                continue
            sub = cast(Descriptor, f.message_type)
            one: st.SearchStrategy[Any] = _message(sub, hints, depth - 1).map(
                partial(_build, _concrete(sub))
            )
        else:
            one = _scalar(f)
        if f.name in hints:
            one = st.one_of(hints[f.name], one)
        optional[f.name] = st.lists(one, max_size=6) if is_repeated(f) else one
    return st.fixed_dictionaries({}, optional=optional)


def _build(make: Callable[..., Message], fields: dict[str, Any]) -> Message:
    return make(**fields)


def _concrete(descriptor: Descriptor) -> Callable[..., Message]:
    return cast(Callable[..., Message], GetMessageClass(descriptor))


def mutations(valid: bytes) -> st.SearchStrategy[bytes]:
    """`valid` as it is (the control), or with a few byte-level edits
    (`tests.fuzz_mutations.mutated_bytes`)."""
    return st.one_of(st.just(valid), mutated_bytes(valid))
