"""Sealed-stream benchmark: `crypto.sealing` against raw secretstream push and pull.

Run from the repository root: `.venv/bin/python -m bench.crypto_sealing [--mib 1024]
[--chunk-size BYTES] [--repeats 3] [--json FILE]`. Nothing here asserts a timing.

The plaintext is `--mib` MiB made of four distinct random 1 MiB blocks, repeated,
held in memory once; nothing produced is kept. Each part below runs `--repeats`
times, the parts interleaved, and the best run of each is reported (a shared
machine only ever makes a run slower). MB is 10^6 bytes.

- raw push: `crypto_secretstream_xchacha20poly1305_push` of the plaintext in pieces
  of the chunk size (the last tagged TAG_FINAL), with PyNaCl directly, no
  associated data, output discarded. The whole loop is timed.
- seal: `SealedStreamWriter.header/update/finalize` to one recipient, fed the same
  1 MiB blocks (or blocks of the chunk size, if larger), output discarded. Timed
  as a whole: the writer's own SHA-256 of plaintext and sealed bytes included.
- raw pull: the same raw push produces each chunk (not timed) and
  `crypto_secretstream_xchacha20poly1305_pull` opens it; only the pull calls are
  timed.
- open: a writer produces the sealed stream piece by piece (not timed) and
  `SealedStreamReader.feed` opens each piece as it comes (timed, with the final
  `feed(eof=True)` and `close()`), so 1 GiB is never held. `expected=None`: the
  stream is new each time, so its digests are not known beforehand; with them
  the reader only compares two 32-byte values more at the end.
- floors: raw push (pull) plus SHA-256 of the plaintext and of the sealed
  chunks, the two digests the format requires, with `hashlib`: the least any
  implementation of this format does. Shown so that the cost of the format can
  be told from the cost of this code.

Memory: child processes (`--memory-probe MIB`) each seal MIB MiB with
`seal_stream` into a temporary file, then `open_stream` it (with the manifest's
values) into /dev/null, and report their peak RSS (VmHWM).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

import nacl
import nacl.bindings as sodium

from crypto import x25519
from crypto.sealing import (
    DEFAULT_CHUNK_SIZE,
    MAX_CHUNK_SIZE,
    MIN_CHUNK_SIZE,
    SealedStreamReader,
    SealedStreamWriter,
    open_stream,
    seal_stream,
)

MiB: Final = 1 << 20
GOAL: Final = 0.8  # ours / raw, at least, for seal and for open
# "Peak memory independent of size", read as: the largest probe's peak RSS exceeds the
# smallest's by less than this.
MEMORY_GOAL_KIB: Final = 8 * 1024
# Fixed keys for generated data only.
_SECRET: Final = x25519.PrivateKey.from_bytes(bytes(range(1, 33)))
_PUBLIC: Final = _SECRET.public_key
_RAW_KEY: Final = bytes(range(32, 64))
_TAG_MESSAGE: Final = sodium.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
_TAG_FINAL: Final = sodium.crypto_secretstream_xchacha20poly1305_TAG_FINAL

_started = time.perf_counter()


def say(message: str) -> None:
    """Progress on stderr, with the seconds since the benchmark started."""
    print(f"[{time.perf_counter() - _started:7.1f}s] {message}", file=sys.stderr, flush=True)


class Plaintext:
    """`total` bytes made of four random blocks repeated, as blocks and as chunk pieces."""

    def __init__(self, total: int, chunk_size: int, *, seed: int = 1) -> None:
        unit = max(MiB, chunk_size)
        if unit % chunk_size or total % unit or total <= 0:
            raise ValueError("the size must be a whole number of blocks, each of whole chunks")
        rng = random.Random(seed)
        self.blocks = [rng.randbytes(unit) for _ in range(4)]
        self.count = total // unit
        self.total = total
        self.chunk_size = chunk_size

    def iter_blocks(self) -> list[bytes]:
        """The blocks in order (references, no copies)."""
        return [self.blocks[i % 4] for i in range(self.count)]

    def iter_chunks(self) -> list[bytes]:
        """The chunk-size pieces in order (each block cut once; references after that)."""
        unit, size = len(self.blocks[0]), self.chunk_size
        pieces = [[block[i : i + size] for i in range(0, unit, size)] for block in self.blocks]
        return [piece for i in range(self.count) for piece in pieces[i % 4]]


def time_raw_push(plain: Plaintext) -> float:
    chunks = plain.iter_chunks()
    last = len(chunks) - 1
    state = sodium.crypto_secretstream_xchacha20poly1305_state()
    start = time.perf_counter()
    sodium.crypto_secretstream_xchacha20poly1305_init_push(state, _RAW_KEY)
    for i, chunk in enumerate(chunks):
        sodium.crypto_secretstream_xchacha20poly1305_push(
            state, chunk, None, _TAG_FINAL if i == last else _TAG_MESSAGE
        )
    return time.perf_counter() - start


def time_raw_pull(plain: Plaintext, *, hashed: bool = False) -> float:
    chunks = plain.iter_chunks()
    last = len(chunks) - 1
    push = sodium.crypto_secretstream_xchacha20poly1305_state()
    pull = sodium.crypto_secretstream_xchacha20poly1305_state()
    header = sodium.crypto_secretstream_xchacha20poly1305_init_push(push, _RAW_KEY)
    sodium.crypto_secretstream_xchacha20poly1305_init_pull(pull, header, _RAW_KEY)
    plain_hash, sealed_hash = hashlib.sha256(), hashlib.sha256()
    timed = 0.0
    clock = time.perf_counter
    for i, chunk in enumerate(chunks):
        record = sodium.crypto_secretstream_xchacha20poly1305_push(
            push, chunk, None, _TAG_FINAL if i == last else _TAG_MESSAGE
        )
        start = clock()
        opened, _tag = sodium.crypto_secretstream_xchacha20poly1305_pull(pull, record, None)
        if hashed:
            sealed_hash.update(record)
            plain_hash.update(opened)
        timed += clock() - start
    return timed


def time_raw_push_hashed(plain: Plaintext) -> float:
    chunks = plain.iter_chunks()
    last = len(chunks) - 1
    state = sodium.crypto_secretstream_xchacha20poly1305_state()
    plain_hash, sealed_hash = hashlib.sha256(), hashlib.sha256()
    start = time.perf_counter()
    sodium.crypto_secretstream_xchacha20poly1305_init_push(state, _RAW_KEY)
    for i, chunk in enumerate(chunks):
        plain_hash.update(chunk)
        sealed_hash.update(
            sodium.crypto_secretstream_xchacha20poly1305_push(
                state, chunk, None, _TAG_FINAL if i == last else _TAG_MESSAGE
            )
        )
    return time.perf_counter() - start


def time_seal(plain: Plaintext) -> float:
    start = time.perf_counter()
    writer = SealedStreamWriter([_PUBLIC], chunk_size=plain.chunk_size)
    writer.header()
    for block in plain.iter_blocks():
        writer.update(block)
    writer.finalize()
    elapsed = time.perf_counter() - start
    if writer.plaintext_size != plain.total:
        raise RuntimeError("the writer did not seal every byte")
    return elapsed


def time_open(plain: Plaintext) -> float:
    writer = SealedStreamWriter([_PUBLIC], chunk_size=plain.chunk_size)
    clock = time.perf_counter
    start = clock()
    reader = SealedStreamReader(_SECRET, expected=None)
    released = len(reader.feed(writer.header()))
    timed = clock() - start
    for block in plain.iter_blocks():
        sealed = writer.update(block)
        start = clock()
        released += len(reader.feed(sealed))
        timed += clock() - start
    sealed = writer.finalize()
    start = clock()
    released += len(reader.feed(sealed, eof=True))
    info = reader.close()
    timed += clock() - start
    if released != plain.total or info != writer.info:
        raise RuntimeError("the reader did not open the stream the writer sealed")
    return timed


PARTS: Final[dict[str, Callable[[Plaintext], float]]] = {
    "raw_push": time_raw_push,
    "seal": time_seal,
    "seal_floor": time_raw_push_hashed,
    "raw_pull": time_raw_pull,
    "open": time_open,
    "open_floor": lambda plain: time_raw_pull(plain, hashed=True),
}


# --- memory ----------------------------------------------------------------------------------


class _PatternSource(io.BytesIO):
    """A readable file of `total` bytes from the blocks of a `Plaintext`, generated on read."""

    def __init__(self, plain: Plaintext) -> None:
        super().__init__()
        self._plain = plain
        self._pos = 0

    def read(self, size: int | None = -1, /) -> bytes:
        unit = len(self._plain.blocks[0])
        remaining = self._plain.total - self._pos
        if size is None or size < 0 or size > remaining:
            size = remaining
        index, offset = divmod(self._pos, unit)
        size = min(size, unit - offset)
        self._pos += size
        block = self._plain.blocks[index % 4]
        return block if size == unit else block[offset : offset + size]


def _status_kib(field: str) -> int | None:
    try:
        text = Path("/proc/self/status").read_text(encoding="ascii")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(field + ":") and line.endswith(" kB"):
            return int(line.split()[1])
    return None


def memory_probe(mib: int, chunk_size: int) -> dict[str, Any]:
    """In this process: seal `mib` MiB into a temporary file and open it; peak RSS after."""
    plain = Plaintext(mib * MiB, chunk_size, seed=2)
    before = _status_kib("VmHWM")
    with tempfile.TemporaryDirectory(prefix="compact-bench-sealing-") as tmp:
        path = Path(tmp) / "sealed"
        with path.open("wb") as dst:
            info = seal_stream(_PatternSource(plain), dst, [_PUBLIC], chunk_size=chunk_size)
        with path.open("rb") as src, open(os.devnull, "wb") as sink:
            opened = open_stream(src, sink, _SECRET, expected=info)
    if opened != info or info.plaintext_size != plain.total:
        raise RuntimeError("the probe's stream did not round-trip")
    return {
        "mib": mib,
        "vmhwm_kib_before": before,
        "vmhwm_kib": _status_kib("VmHWM"),
        "sealed_bytes": info.ciphertext_size,
    }


def run_probe(mib: int, chunk_size: int) -> dict[str, Any]:
    """`memory_probe` in a fresh child process."""
    command = [
        sys.executable,
        "-m",
        "bench.crypto_sealing",
        "--memory-probe",
        str(mib),
        "--chunk-size",
        str(chunk_size),
    ]
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(command, cwd=root, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


# --- the run ---------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "pynacl": nacl.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
    }


def run(
    mib: int = 1024,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    *,
    repeats: int = 3,
    probes: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Measure every part `repeats` times, interleaved; returns the figures as a dict."""
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    plain = Plaintext(mib * MiB, chunk_size)
    samples: dict[str, list[float]] = {name: [] for name in PARTS}
    for round_ in range(repeats):
        for name, part in PARTS.items():
            seconds = part(plain)
            samples[name].append(plain.total / seconds / 1e6)
            say(f"round {round_ + 1}/{repeats} {name}: {samples[name][-1]:,.0f} MB/s")
    best = {name: max(values) for name, values in samples.items()}
    ratios = {
        "seal_vs_raw_push": best["seal"] / best["raw_push"],
        "open_vs_raw_pull": best["open"] / best["raw_pull"],
        "seal_vs_floor": best["seal"] / best["seal_floor"],
        "open_vs_floor": best["open"] / best["open_floor"],
        "floor_seal_vs_raw_push": best["seal_floor"] / best["raw_push"],
        "floor_open_vs_raw_pull": best["open_floor"] / best["raw_pull"],
    }
    if probes is None:
        probes = sorted({max(1, min(64, mib // 4)), mib})
    memory = []
    for size in probes:
        say(f"memory probe: seal and open {size} MiB in a child process")
        memory.append(run_probe(size, chunk_size))
    peaks = [p["vmhwm_kib"] for p in memory if p["vmhwm_kib"] is not None]
    growth = max(peaks) - min(peaks) if len(peaks) == len(memory) and peaks else None
    return {
        "machine": machine_info(),
        "mib": mib,
        "bytes": plain.total,
        "chunk_size": chunk_size,
        "repeats": repeats,
        "mb_per_s": best,
        "samples_mb_per_s": samples,
        "ratios": ratios,
        "goal": GOAL,
        "goal_met": {
            "seal": ratios["seal_vs_raw_push"] >= GOAL,
            "open": ratios["open_vs_raw_pull"] >= GOAL,
        },
        "memory": {
            "probes": memory,
            "growth_kib": growth,
            "goal_kib": MEMORY_GOAL_KIB,
            "goal_met": None if growth is None else growth < MEMORY_GOAL_KIB,
        },
    }


def render(results: dict[str, Any]) -> str:
    best = results["mb_per_s"]
    ratios = results["ratios"]
    lines = [
        f"Sealed streams: {results['mib']:,} MiB in chunks of {results['chunk_size']:,} bytes, "
        f"best of {results['repeats']} (MB = 10^6 bytes)",
        "",
        f"  {'':<34}{'MB/s':>10}",
    ]
    labels = {
        "raw_push": "raw secretstream push",
        "seal": "seal (SealedStreamWriter)",
        "seal_floor": "floor: raw push + 2 x SHA-256",
        "raw_pull": "raw secretstream pull",
        "open": "open (SealedStreamReader)",
        "open_floor": "floor: raw pull + 2 x SHA-256",
    }
    for name, label in labels.items():
        lines.append(f"  {label:<34}{best[name]:>10,.0f}")
    lines += [
        "",
        f"  seal / raw push   {ratios['seal_vs_raw_push']:.2f}   (goal >= {results['goal']})",
        f"  open / raw pull   {ratios['open_vs_raw_pull']:.2f}   (goal >= {results['goal']})",
        f"  seal / floor      {ratios['seal_vs_floor']:.2f}",
        f"  open / floor      {ratios['open_vs_floor']:.2f}",
        f"  floor / raw push  {ratios['floor_seal_vs_raw_push']:.2f}",
        f"  floor / raw pull  {ratios['floor_open_vs_raw_pull']:.2f}",
        "",
        "Peak RSS (VmHWM) of seal_stream + open_stream, each size in a child process",
    ]
    memory = results["memory"]
    for probe in memory["probes"]:
        lines.append(f"  {probe['mib']:>6,} MiB: {probe['vmhwm_kib']:,} KiB")
    if memory["growth_kib"] is not None:
        lines.append(
            f"  difference: {memory['growth_kib']:,} KiB (goal < {memory['goal_kib']:,} KiB)"
        )
    return "\n".join(lines) + "\n"


def _chunk_size(text: str) -> int:
    value = int(text)
    if not MIN_CHUNK_SIZE <= value <= MAX_CHUNK_SIZE or value & (value - 1):
        raise argparse.ArgumentTypeError(
            f"a power of two between {MIN_CHUNK_SIZE} and {MAX_CHUNK_SIZE}"
        )
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.crypto_sealing",
        description="Sealing and opening a stream against raw secretstream push and pull.",
    )
    p.add_argument("--mib", type=_positive, default=1024, help="stream size in MiB")
    p.add_argument("--chunk-size", type=_chunk_size, default=DEFAULT_CHUNK_SIZE)
    p.add_argument("--repeats", type=_positive, default=3)
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the figures here")
    p.add_argument("--memory-probe", type=_positive, metavar="MIB", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.memory_probe is not None:
        print(json.dumps(memory_probe(args.memory_probe, args.chunk_size)))
        return 0
    results = run(args.mib, args.chunk_size, repeats=args.repeats)
    print(render(results), end="")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
