"""Compact-wide pseudonyms of identifier keys, through the threshold OPRF.

`pseudonym(key) = OPRF(compact key, "kind:value")` (RFC 9497 VOPRF,
ristretto255-SHA512; DESIGN.md section 4), hex-encoded. For the keys it has no
cached pseudonym for, the node blinds them, sends each batch to share
holders (itself first when it holds a share), checks every answer on its own
against the holder's commitment in the roster (the right share index, one
element per input, a DLEQ proof that verifies), and combines the first `t`
valid answers. A holder that answers wrongly is reported (`on_bad_answer`)
and the next holder is asked; fewer than `t` valid answers fail the batch
(`PseudonymError`) and nothing is cached. Holders that cannot be reached are
skipped the same way. Results are cached per OPRF public record.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from crypto.errors import CryptoError
from crypto.oprf import blind
from crypto.ristretto import Element, Scalar
from crypto.threshold_oprf import (
    MODE,
    KeyShare,
    ShareEvaluation,
    combine_verified,
    evaluate_share,
    threshold_finalize,
    verify_share_evaluation,
)
from federation.ceremony import public_sha256
from federation.errors import FederationError
from federation.roster import Roster
from node.fedstore import FederationStore

MAX_KEY_BYTES: Final = 2048

Evaluate = Callable[[Sequence[Element]], Awaitable[ShareEvaluation]]


class PseudonymError(FederationError):
    """Pseudonyms could not be computed (too few share holders answered correctly)."""


@dataclass(frozen=True)
class ShareHolder:
    """A member that holds a share: this node (local) or a peer reached over FederationService."""

    state: str
    evaluate: Evaluate


def local_holder(state: str, share: KeyShare) -> ShareHolder:
    async def evaluate(blinded: Sequence[Element]) -> ShareEvaluation:
        return await asyncio.to_thread(evaluate_share, share, blinded)

    return ShareHolder(state, evaluate)


class Pseudonymiser:
    def __init__(
        self,
        *,
        store: FederationStore,
        roster: Roster,
        holders: Sequence[ShareHolder],
        batch_size: int = 500,
        on_bad_answer: Callable[[str, str], None] | None = None,
    ) -> None:
        if roster.oprf is None:
            raise PseudonymError("the roster has no OPRF public record: run the key ceremony")
        self._store = store
        self._public = roster.oprf
        self._digest = public_sha256(roster.oprf)
        self._holders = list(holders)
        self._batch = max(1, min(batch_size, 1000))
        self._on_bad = on_bad_answer or (lambda _state, _reason: None)

    @property
    def oprf_sha256(self) -> str:
        return self._digest

    async def pseudonyms(
        self, keys: Iterable[str], *, progress: Callable[[int], None] | None = None
    ) -> dict[str, str]:
        """The pseudonym (128 hex digits) of each key, from the cache or computed now."""
        wanted = sorted(set(keys))
        for key in wanted:
            if not key or len(key.encode("utf-8")) > MAX_KEY_BYTES:
                raise PseudonymError("an identifier key is empty or too long")
        out = await asyncio.to_thread(self._store.cached_pseudonyms, self._digest, wanted)
        missing = [k for k in wanted if k not in out]
        for start in range(0, len(missing), self._batch):
            batch = missing[start : start + self._batch]
            computed = await self._compute(batch)
            await asyncio.to_thread(self._store.cache_pseudonyms, self._digest, computed)
            out.update(computed)
            if progress is not None:
                progress(len(batch))
        return out

    async def _compute(self, keys: list[str]) -> dict[str, str]:
        inputs = [k.encode("utf-8") for k in keys]
        blinds, blinded = await asyncio.to_thread(_blind_all, inputs)
        t = self._public.threshold
        verified: dict[int, tuple[Element, ...]] = {}
        failures: list[str] = []
        remaining = list(self._holders)
        while len(verified) < t and remaining:
            ask, remaining = remaining[: t - len(verified)], remaining[t - len(verified) :]
            answers = await asyncio.gather(
                *(h.evaluate(blinded) for h in ask), return_exceptions=True
            )
            for holder, answer in zip(ask, answers, strict=True):
                problem = await asyncio.to_thread(self._check, holder, blinded, answer)
                if problem is None:
                    assert isinstance(answer, ShareEvaluation)
                    verified[answer.index] = answer.evaluated_elements
                else:
                    failures.append(f"{holder.state}: {problem}")
        if len(verified) < t:
            detail = "; ".join(failures) or "no share holders"
            raise PseudonymError(f"{len(verified)} of {t} share answers are valid ({detail})")
        combined = await asyncio.to_thread(combine_verified, len(blinded), verified, t=t)
        outputs = await asyncio.to_thread(threshold_finalize, inputs, blinds, combined)
        return {k: o.hex() for k, o in zip(keys, outputs, strict=True)}

    def _check(self, holder: ShareHolder, blinded: Sequence[Element], answer: object) -> str | None:
        if isinstance(answer, BaseException):
            if not isinstance(answer, Exception):
                raise answer
            return f"no answer ({type(answer).__name__}: {answer})"
        commitment = self._public.commitments.get(holder.state)
        if commitment is None:
            return "holds no share in the roster"
        if not isinstance(answer, ShareEvaluation) or answer.index != commitment.index:
            reason = "answered for another share index"
        else:
            try:
                verify_share_evaluation(blinded, answer, self._public.commitment_table())
                return None
            except CryptoError as e:
                reason = f"bad evaluation or proof ({e})"
        self._on_bad(holder.state, reason)
        return reason


def _blind_all(inputs: Sequence[bytes]) -> tuple[list[Scalar], list[Element]]:
    pairs = [blind(x, mode=MODE) for x in inputs]
    return [b for b, _ in pairs], [e for _, e in pairs]
