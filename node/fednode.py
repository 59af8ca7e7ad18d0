"""A node's part in the compact: publish its index, pseudonymise, sync and witness its peers.

`FederationNode` ties the pieces together for `compact serve` (a background
loop every `federation.sync_interval_seconds`) and `compact sync` (once, now,
with progress):

1. **Roster.** Each peer is asked for roster versions newer than the one in
   force; they are applied only through the verified chain (node.fedstore).
2. **Publish.** New and changed incidents get signed index entries in this
   node's log, their identifier keys pseudonymised through the threshold OPRF
   (this node's share first, then peers'); a checkpoint is signed.
3. **Replicate and witness.** For each peer: its newest checkpoint, checked
   for consistency with the last one accepted (node.replica), then its
   entries from the replica's cursor, verified batch by batch; then this node
   cosigns the checkpoint and returns the cosignature. A fork, a replay, a
   forged entry raises an alert (`compact alerts`) with the signed evidence.
4. **Backoff.** A peer that cannot be reached is retried after 2^failures
   seconds (with jitter), at most `federation.max_backoff_seconds`; nothing
   is lost or duplicated when it returns, as the cursor only moves with what
   was stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import select

from crypto import signing
from crypto.dsse import Envelope
from crypto.keystore import NodeKeys
from crypto.ristretto import Element
from crypto.threshold_oprf import ShareEvaluation
from federation.errors import FederationError
from federation.naming import witness_signer
from federation.roster import Member, Roster
from node import models as m
from node.config import Config
from node.fedclient import PeerClient
from node.fedstore import FederationStore
from node.ingest import NodeStorage
from node.pseudonymise import Pseudonymiser, ShareHolder, local_holder
from node.publish import Publisher, PublishReport
from node.replica import Entry, ReplicaError, Replicas
from node.translog import TransparencyLog

log = structlog.get_logger("compact.federation")
PUBLISH_POLL_SECONDS = 2.0


@dataclass(frozen=True)
class PeerReport:
    state: str
    ok: bool
    entries: int = 0
    size: int | None = None
    error: str | None = None
    skipped: bool = False


Progress = Callable[[str, int, int], None]  # (peer state, done, total)


class FederationNode:
    def __init__(
        self,
        config: Config,
        keys: NodeKeys,
        storage: NodeStorage,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self.keys = keys
        self.storage = storage
        self.state = config.node.state
        self.clock = clock
        self.store = FederationStore(storage.db, storage.fields, self.state)
        self.log = TransparencyLog(storage.db)
        self.signing_key = signing.SigningKey(keys.signing_key)
        self.publisher = Publisher(storage, self.log, self.signing_key)
        self.replicas = Replicas(storage.db)
        self._cert_pem = config.path(config.keys.tls_certificate).read_bytes()

    # --- peers ---------------------------------------------------------------------------

    def client(self, member: Member, certificate: bytes) -> PeerClient:
        return PeerClient(
            member,
            certificate,
            tls_key_pem=self.keys.tls_key_pem,
            tls_cert_pem=self._cert_pem,
            deadline_seconds=self.config.federation.deadline_seconds,
        )

    def peers(self, roster: Roster) -> list[tuple[Member, bytes]]:
        certs = self.store.certificates(roster)
        return [
            (mb, certs[mb.state])
            for mb in roster.members
            if mb.state != self.state and mb.state in certs
        ]

    # --- pseudonyms and publishing -------------------------------------------------------

    def pseudonymiser(self, roster: Roster) -> Pseudonymiser:
        holders: list[ShareHolder] = []
        own = self.store.share(roster)
        if own is not None:
            holders.append(local_holder(self.state, own))
        oprf = roster.oprf
        for member, cert in self.peers(roster):
            if oprf is not None and member.state in oprf.commitments:
                holders.append(ShareHolder(member.state, self._remote_evaluate(member, cert)))
        return Pseudonymiser(
            store=self.store,
            roster=roster,
            holders=holders,
            batch_size=self.config.federation.oprf_batch_size,
            on_bad_answer=self._bad_oprf_answer,
        )

    def _remote_evaluate(self, member: Member, cert: bytes) -> Callable[[Sequence[Element]], Any]:
        async def evaluate(blinded: Sequence[Element]) -> ShareEvaluation:
            async with self.client(member, cert) as c:
                return await c.evaluate_oprf(blinded)

        return evaluate

    def _bad_oprf_answer(self, state: str, reason: str) -> None:
        self.alert(
            "bad-oprf-answer", state, f"{state} answered an OPRF request wrongly: {reason}", {}
        )

    async def publish(self, *, progress: Callable[[int], None] | None = None) -> PublishReport:
        roster = self.store.require_roster()
        if roster.oprf is None:
            raise FederationError("the roster has no OPRF key yet: run the key ceremony first")
        return await self.publisher.publish(self.pseudonymiser(roster), progress=progress)

    # --- sync ------------------------------------------------------------------------------

    async def sync(
        self, *, force: bool = False, progress: Progress | None = None
    ) -> list[PeerReport]:
        """Update the roster, publish, then replicate and witness every due peer (all: force)."""
        roster = self.store.require_roster()
        await self._update_roster(roster)
        roster = self.store.require_roster()
        if roster.oprf is not None:
            try:
                await self.publish()
            except FederationError as e:
                log.warning("publish_failed", error=str(e))
        reports = await asyncio.gather(
            *(
                self._sync_peer(roster, mb, cert, force=force, progress=progress)
                for mb, cert in self.peers(roster)
            )
        )
        return list(reports)

    async def _update_roster(self, roster: Roster) -> None:
        for member, cert in self.peers(roster):
            try:
                async with self.client(member, cert) as c:
                    envelopes, certificates = await c.get_roster(roster.version)
            except FederationError:
                continue
            for raw in envelopes:
                try:
                    envelope = Envelope.from_json(raw)
                    roster = await asyncio.to_thread(
                        self.store.apply_roster, envelope, certificates, now=self.clock()
                    )
                    log.info("roster_applied", version=roster.version, source=member.state)
                except Exception as e:  # noqa: BLE001 - any refusal: keep the roster in force
                    self.alert(
                        "roster-refused",
                        member.state,
                        f"{member.state} offered a roster version that was refused: {e}",
                        {},
                    )
                    break

    def _due(self, state: str) -> bool:
        with self.storage.db.read() as s:
            row = s.get(m.PeerStatus, state)
            return row is None or row.next_attempt is None or row.next_attempt <= self.clock()

    async def _sync_peer(
        self, roster: Roster, member: Member, cert: bytes, *, force: bool, progress: Progress | None
    ) -> PeerReport:
        state = member.state
        if not force and not await asyncio.to_thread(self._due, state):
            return PeerReport(state, ok=False, skipped=True, error="backing off")
        await asyncio.to_thread(self._attempt, state)
        try:
            async with self.client(member, cert) as c:
                count, size = await self._replicate(c, roster, member, progress)
        except ReplicaError as e:
            self.alert(e.kind, state, str(e), e.evidence)
            await asyncio.to_thread(self._failed, state, str(e))
            return PeerReport(state, ok=False, error=str(e))
        except FederationError as e:
            await asyncio.to_thread(self._failed, state, str(e))
            return PeerReport(state, ok=False, error=str(e))
        await asyncio.to_thread(self._succeeded, state, size)
        return PeerReport(state, ok=True, entries=count, size=size)

    async def _replicate(
        self, c: PeerClient, roster: Roster, member: Member, progress: Progress | None
    ) -> tuple[int, int]:
        state = member.state
        before = await asyncio.to_thread(self.replicas.state_of, state)
        old_size = before.checkpoint.size if before.checkpoint else 0
        note, proof = await c.get_checkpoint(old_size)
        checkpoint = await asyncio.to_thread(
            self.replicas.accept_checkpoint, member, note, proof, now=self.clock()
        )
        size, stored = before.size, 0
        batch = self.config.federation.entries_per_request
        while size < checkpoint.size:
            wire, batch_proof = await c.get_entries(size, batch, checkpoint.size)
            if not wire:
                raise FederationError(f"{state} sent no entries below its checkpoint")
            entries = [Entry(w.index, w.kind, w.payload, w.leaf_hash) for w in wire]
            stored += await asyncio.to_thread(
                self.replicas.accept_entries, roster, member, entries, batch_proof, now=self.clock()
            )
            size += len(entries)
            if progress is not None:
                progress(state, size, checkpoint.size)
        signer = witness_signer(self.state, self.signing_key)
        line = signer.cosign(checkpoint, timestamp=int(self.clock().timestamp()))
        try:
            await c.submit_cosignature(checkpoint.to_text(), line)
        except FederationError as e:
            log.warning("cosignature_not_delivered", peer=state, error=str(e))
        return stored, checkpoint.size

    # --- bookkeeping -------------------------------------------------------------------------

    def _attempt(self, state: str) -> None:
        with self.storage.db.write() as s:
            row = s.get(m.PeerStatus, state)
            if row is None:
                row = m.PeerStatus(state=state, failures=0)
                s.add(row)
            row.last_attempt = self.clock()

    def _failed(self, state: str, error: str) -> None:
        with self.storage.db.write() as s:
            row = s.get(m.PeerStatus, state)
            assert row is not None
            row.failures += 1
            row.last_error = error[:2000]
            delay = min(self.config.federation.max_backoff_seconds, 2.0 ** min(row.failures, 30))
            delay *= random.uniform(0.8, 1.0)  # noqa: S311 - jitter, not a secret
            row.next_attempt = self.clock() + timedelta(seconds=delay)
        log.warning("peer_sync_failed", peer=state, error=error)

    def _succeeded(self, state: str, size: int) -> None:
        with self.storage.db.write() as s:
            row = s.get(m.PeerStatus, state)
            assert row is not None
            row.failures = 0
            row.last_error = None
            row.last_success = self.clock()
            row.next_attempt = None
            row.peer_size = size

    def alert(self, kind: str, state: str, message: str, evidence: dict[str, Any]) -> None:
        with self.storage.db.write() as s:
            s.add(
                m.Alert(at=self.clock(), kind=kind, state=state, message=message, evidence=evidence)
            )
        log.error("federation_alert", kind=kind, peer=state, message=message)

    def alerts(self) -> list[m.Alert]:
        with self.storage.db.read() as s:
            rows = list(s.scalars(select(m.Alert).order_by(m.Alert.id)))
            s.expunge_all()
            return rows

    async def run_forever(self, stop: asyncio.Event) -> None:
        """The background loop of `compact serve`: publish new records within a few seconds
        of their ingest, sync with every member each `sync_interval_seconds`."""
        interval = self.config.federation.sync_interval_seconds
        tick = min(interval, PUBLISH_POLL_SECONDS)
        next_sync = 0.0
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            try:
                roster = self.store.roster()
                if roster is not None:
                    if loop.time() >= next_sync:
                        next_sync = loop.time() + interval
                        await self.sync()
                    elif roster.oprf is not None and any(
                        await asyncio.to_thread(self.publisher.pending)
                    ):
                        await self.publish()
            except FederationError as e:
                log.warning("federation_round_failed", error=str(e))
            except Exception:
                log.exception("federation_round_crashed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=tick)
