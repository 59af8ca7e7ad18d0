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
import functools
import random
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import grpc
import structlog
from sqlalchemy import select

from crypto import signing, x25519
from crypto.dsse import Envelope
from crypto.keystore import NodeKeys
from crypto.ristretto import Element
from crypto.threshold_oprf import ShareEvaluation
from federation.errors import FederationError
from federation.keyhistory import witness_verifiers
from federation.naming import witness_signer
from federation.roster import Member, Roster
from node import models as m
from node.bundle_receive import (
    BadBundle,
    BundleBusy,
    BundleReceiver,
    Receiving,
    Transfer,
    TransferFault,
)
from node.bundle_seal import BundleSealer
from node.bundles import BundleDesk, BundleRefused
from node.config import Config
from node.errors import StorageError
from node.fedclient import PeerClient, PeerRefusedByError
from node.fedstore import FederationStore, key_history
from node.ingest import NodeStorage
from node.keyrotation import finish_rotation, keys_public, running_keys_stale
from node.matters import MatterDesk, PendingShare
from node.pseudonymise import Pseudonymiser, ShareHolder, local_holder
from node.publish import Publisher, PublishReport
from node.replica import Entry, ReplicaError, Replicas, VerifiedBatch
from node.translog import TransparencyLog

log = structlog.get_logger("compact.federation")
PUBLISH_POLL_SECONDS = 2.0
# Entries stored per transaction while catching up: one commit, and each index page
# written once, for several requests' worth.
STORE_GROUP = 5000
T = TypeVar("T")
# Units of a bundle read from the holder ahead of the one being verified (1 MiB each at
# the default chunk size), so that the network does not wait for the disk.
READ_AHEAD_UNITS = 4


async def read_ahead(source: AsyncGenerator[T], depth: int) -> AsyncGenerator[T]:
    """The items of `source`, read by a task of their own up to `depth` ahead of the
    consumer. Its error is raised where the item would have been; leaving early stops it."""
    items: asyncio.Queue[tuple[T] | Exception | None] = asyncio.Queue(depth)

    async def pump() -> None:
        try:
            async for item in source:
                await items.put((item,))
        except Exception as e:  # noqa: BLE001 - raised to the consumer, in order
            await items.put(e)
        else:
            await items.put(None)
        finally:  # a generator left at a yield is closed now, not when collected
            await source.aclose()

    task = asyncio.create_task(pump())
    try:
        while True:
            got = await items.get()
            if got is None:
                return
            if isinstance(got, Exception):
                raise got
            yield got[0]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@dataclass(frozen=True)
class MatterShare:
    """One matter revision offered to a member: the revision it holds now, or why it could
    not be given (`held` None: tried again next time)."""

    matter_id: str
    state: str
    revision: int
    held: int | None
    error: str | None


@dataclass(frozen=True)
class BundleExchange:
    """One outgoing request after asking its holder: the new state, or why it is unchanged
    (`state` None: the holder could not be asked; tried again next time)."""

    request_id: str
    holder: str
    state: str | None
    error: str | None


@dataclass(frozen=True)
class PeerReport:
    state: str
    ok: bool
    entries: int = 0
    size: int | None = None
    error: str | None = None
    skipped: bool = False
    seconds: float = 0.0  # this peer's round: checkpoint, entries, cosignature
    # Seconds in each step, summed over batches; they overlap (the next batch is fetched
    # and verified while one is stored), so they add up to more than `seconds`.
    phases: dict[str, float] = field(default_factory=dict)


Progress = Callable[[str, int, int], None]  # (peer state, done, total)
# (request id, bytes verified, bytes in all)
TransferProgress = Callable[[str, int, int], None]


class FederationNode:
    def __init__(
        self,
        config: Config,
        keys: NodeKeys,
        storage: NodeStorage,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        retired: Sequence[NodeKeys] = (),
    ) -> None:
        self.config = config
        self.keys = keys
        # Keys this node had before a rotation (node.keyrotation): their X25519 halves
        # open bundles sealed to them before the members applied the new roster.
        self.retired = tuple(retired)
        # Set when the roster in force made rotated keys current: `compact serve` then
        # restarts its servers with them.
        self.rotated = False
        self.storage = storage
        self.state = config.node.state
        self.clock = clock
        self.store = FederationStore(storage.db, storage.fields, self.state)
        self.log = TransparencyLog(storage.db)
        self.signing_key = signing.SigningKey(keys.signing_key)
        self.publisher = Publisher(storage, self.log, self.signing_key)
        self.replicas = Replicas(storage.db, own_state=self.state)
        self.bundles = BundleDesk(storage, self.log, self.signing_key, config.bundles, clock=clock)
        self.matters = MatterDesk(storage, self.log, self.signing_key, clock=clock)
        self.sealer = BundleSealer(
            storage, self.log, self.signing_key, config.bundles, config.bundle_dir, clock=clock
        )
        self.receiver = BundleReceiver(
            storage,
            self.signing_key,
            x25519.PrivateKey(keys.encryption_key),
            config.bundle_dir,
            clock=clock,
            alert=self.alert,
            earlier_keys=[x25519.PrivateKey(k.encryption_key) for k in self.retired],
        )
        self._cert_pem = config.path(config.keys.tls_certificate).read_bytes()
        self._running = keys_public(keys, self._cert_pem)
        self._looked_at: tuple[int | None, int, int | None] | None = None  # change_marker
        # What the last `sync` published, or why it could not (shown by `compact sync`).
        self.last_publish: PublishReport | None = None
        self.last_publish_error: str | None = None

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

    def share_holders(self, roster: Roster, *, own: bool = True) -> list[ShareHolder]:
        """The OPRF share holders to ask: this node first (unless `own` is false), then peers
        in roster order."""
        holders: list[ShareHolder] = []
        share = self.store.share(roster) if own else None
        if share is not None:
            holders.append(local_holder(self.state, share))
        oprf = roster.oprf
        for member, cert in self.peers(roster):
            if oprf is not None and member.state in oprf.commitments:
                holders.append(ShareHolder(member.state, self._remote_evaluate(member, cert)))
        return holders

    def pseudonymiser(self, roster: Roster, *, own_share: bool = True) -> Pseudonymiser:
        return Pseudonymiser(
            store=self.store,
            roster=roster,
            holders=self.share_holders(roster, own=own_share),
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

    async def publish(self, *, progress: Callable[[int, int], None] | None = None) -> PublishReport:
        roster = self.store.require_roster()
        if roster.oprf is None:
            raise FederationError("the roster has no OPRF key yet: run the key ceremony first")
        return await self.publisher.publish(self.pseudonymiser(roster), progress=progress)

    # --- sync ------------------------------------------------------------------------------

    async def sync(
        self, *, force: bool = False, progress: Progress | None = None
    ) -> list[PeerReport]:
        """Update the roster, publish, then replicate and witness every due peer (all: force).

        `progress(state, done, total)` reports publishing under this node's own state and
        each peer's entries under the peer's.
        """
        roster = self.store.require_roster()
        await self._update_roster(roster)
        roster = self.store.require_roster()
        self.last_publish, self.last_publish_error = None, None
        if roster.oprf is not None:
            own = self.state

            def publishing(done: int, total: int) -> None:
                if progress is not None:
                    progress(own, done, total)

            try:
                self.last_publish = await self.publish(progress=publishing)
            except FederationError as e:
                self.last_publish_error = str(e)
                log.warning("publish_failed", error=str(e))
        if self.last_publish is None:  # the audit trail does not wait on pseudonyms
            await self._log_trail_if_pending()
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
            for i, raw in enumerate(envelopes):
                try:
                    envelope = Envelope.from_json(raw)
                    roster = await asyncio.to_thread(
                        functools.partial(
                            self.store.apply_roster,
                            envelope,
                            certificates,
                            now=self.clock(),
                            # Only the newest version must be in force; those before it
                            # may have expired while this node was away.
                            check_expiry=i == len(envelopes) - 1,
                        )
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
        started = time.perf_counter()
        phases = {"fetch": 0.0, "verify": 0.0, "store": 0.0}
        try:
            async with self.client(member, cert) as c:
                count, size = await self._replicate(c, roster, member, progress, phases)
        except ReplicaError as e:
            self.alert(e.kind, state, str(e), e.evidence)
            await asyncio.to_thread(self._failed, state, str(e))
            return PeerReport(state, False, error=str(e), seconds=time.perf_counter() - started)
        except FederationError as e:
            await asyncio.to_thread(self._failed, state, str(e))
            return PeerReport(state, False, error=str(e), seconds=time.perf_counter() - started)
        seconds = time.perf_counter() - started
        await asyncio.to_thread(self._succeeded, state, size)
        return PeerReport(state, True, entries=count, size=size, seconds=seconds, phases=phases)

    async def _replicate(
        self,
        c: PeerClient,
        roster: Roster,
        member: Member,
        progress: Progress | None,
        phases: dict[str, float],
    ) -> tuple[int, int]:
        state = member.state
        before = await asyncio.to_thread(self.replicas.state_of, state)
        old_size = before.checkpoint.size if before.checkpoint else 0
        note, proof = await c.get_checkpoint(old_size)
        # Cosignature lines of the other members (this node too) are kept with the checkpoint.
        # A witness that rotated its key may still have cosigned with the earlier one.
        history = await asyncio.to_thread(key_history, self.replicas.db)
        witnesses = witness_verifiers(roster.members, history, exclude=state)
        checkpoint = await asyncio.to_thread(
            self.replicas.accept_checkpoint,
            member,
            note,
            proof,
            now=self.clock(),
            witnesses=witnesses,
        )
        size, stored = before.size, 0
        limit = self.config.federation.entries_per_request

        async def fetch(start: int) -> tuple[VerifiedBatch, list[bytes]]:
            """Requests from `start` until a group of STORE_GROUP entries (or the checkpoint),
            each verified as it arrives; the proof is the last one (a consistent end implies
            consistent prefixes)."""
            batches: list[VerifiedBatch] = []
            batch_proof: list[bytes] = []
            while start < checkpoint.size and sum(len(b.entries) for b in batches) < STORE_GROUP:
                t0 = time.perf_counter()
                wire, batch_proof = await c.get_entries(start, limit, checkpoint.size)
                if not wire:
                    raise FederationError(f"{state} sent no entries below its checkpoint")
                entries = [Entry(w.index, w.kind, w.payload, w.leaf_hash) for w in wire]
                t1 = time.perf_counter()
                batches.append(
                    await asyncio.to_thread(self.replicas.verify_batch, roster, state, entries)
                )
                phases["fetch"] += t1 - t0
                phases["verify"] += time.perf_counter() - t1
                start += len(entries)
            return VerifiedBatch.join(batches), batch_proof

        # A pipeline: the next group is fetched and verified while this one is stored.
        pending = asyncio.create_task(fetch(size)) if size < checkpoint.size else None
        try:
            while pending is not None:
                batch, batch_proof = await pending
                following = size + len(batch.entries)
                pending = (
                    asyncio.create_task(fetch(following)) if following < checkpoint.size else None
                )
                t0 = time.perf_counter()
                stored += await asyncio.to_thread(
                    self.replicas.store_batch, batch, batch_proof, now=self.clock()
                )
                phases["store"] += time.perf_counter() - t0
                size = following
                if progress is not None:
                    progress(state, size, checkpoint.size)
        finally:
            if pending is not None:  # a failure above: stop the fetch in flight
                pending.cancel()
                await asyncio.wait([pending])
                if not pending.cancelled():
                    pending.exception()  # retrieved, so that it is not reported as lost
        signer = witness_signer(self.state, self.signing_key)
        line = signer.cosign(checkpoint, timestamp=int(self.clock().timestamp()))
        # Kept before it is sent: a cosignature that is not delivered still counts for
        # exhibit packages (node.replica; docs/federation.md).
        await asyncio.to_thread(
            self.replicas.add_own_cosignature,
            state,
            checkpoint.size,
            line,
            now=self.clock(),
            text=checkpoint.to_text(),
        )
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

    async def _publish_if_changed(self) -> None:
        """Publish when the records may have changed since the last look (the full check
        also runs with every sync, so nothing waits longer than one sync interval)."""
        marker = await asyncio.to_thread(self.publisher.change_marker)
        if marker == self._looked_at:
            return
        if any(await asyncio.to_thread(self.publisher.pending)) or await asyncio.to_thread(
            self.publisher.audit_pending
        ):
            try:
                await self.publish()
            except FederationError:
                await self._log_trail_if_pending()
                raise
        self._looked_at = marker  # only once published: a failure is retried next tick

    async def _log_trail_if_pending(self) -> None:
        """Enter waiting custody and audit events in the log without publishing (node.publish
        ``Publisher.log_trail``): when the node has no roster or OPRF key yet, or
        publishing failed."""
        if await asyncio.to_thread(self.publisher.trail_pending):
            custody, audited, size = await asyncio.to_thread(self.publisher.log_trail)
            log.info("trail_logged", custody=custody, audit=audited, checkpoint=size)

    # --- bundles -------------------------------------------------------------------------

    async def exchange_bundles(self) -> list[BundleExchange]:
        """Send each outgoing request that is not settled to its holder (RequestBundle is
        idempotent, so a request sent before is asked about, not sent twice) and record the
        answer: the decision, verified against the roster. A holder that cannot be reached
        is tried again next time; one that refuses the request fails it, with the reason."""
        roster = self.store.require_roster()
        peers = {mb.state: (mb, cert) for mb, cert in self.peers(roster)}
        results: list[BundleExchange] = []
        for row_id, holder, request_id, envelope in await asyncio.to_thread(self.bundles.unsettled):
            if holder not in peers:
                results.append(BundleExchange(request_id, holder, None, "not a reachable member"))
                continue
            try:
                async with self.client(*peers[holder]) as c:
                    status = await c.request_bundle(envelope)
                info = await asyncio.to_thread(self.bundles.record_status, row_id, status, roster)
                if status.manifest and info.state == "approved":
                    await asyncio.to_thread(
                        self.receiver.accept_manifest, row_id, status.manifest, roster
                    )
                    info = await asyncio.to_thread(self.bundles.info, row_id)
            except PeerRefusedByError as e:
                await asyncio.to_thread(self.bundles.fail, row_id, str(e))
                results.append(BundleExchange(request_id, holder, "failed", str(e)))
            except BundleRefused as e:
                reason = f"{holder} answered with a decision that does not verify: {e.message}"
                self.alert("bad-bundle-decision", holder, reason, {"request_id": request_id})
                await asyncio.to_thread(self.bundles.fail, row_id, reason)
                results.append(BundleExchange(request_id, holder, "failed", reason))
            except BadBundle as e:  # quarantined, with an alert
                results.append(BundleExchange(request_id, holder, "quarantined", str(e)))
            except FederationError as e:
                results.append(BundleExchange(request_id, holder, None, str(e)))
            else:
                results.append(BundleExchange(request_id, holder, info.state, None))
        return results

    # --- matters -------------------------------------------------------------------------

    async def share_matters(self) -> list[MatterShare]:
        """Give each member of this node's matters the newest revision it lacks (ShareMatter
        is idempotent). A member that cannot be reached, or refuses, is tried again next
        time; a refusal is logged with its reason."""
        roster = self.store.require_roster()
        peers = {mb.state: (mb, cert) for mb, cert in self.peers(roster)}
        results: list[MatterShare] = []
        for share in await asyncio.to_thread(self.matters.pending_shares):
            if share.state not in peers:
                results.append(self._share_result(share, None, "not a reachable member"))
                continue
            try:
                async with self.client(*peers[share.state]) as c:
                    held = await c.share_matter(share.envelope)
            except FederationError as e:
                if isinstance(e, PeerRefusedByError):
                    log.warning("matter.share_refused", peer=share.state, error=str(e))
                results.append(self._share_result(share, None, str(e)))
                continue
            await asyncio.to_thread(self.matters.record_shared, share, held)
            results.append(self._share_result(share, held, None))
        return results

    @staticmethod
    def _share_result(share: PendingShare, held: int | None, error: str | None) -> MatterShare:
        return MatterShare(share.matter_id, share.state, share.revision, held, error)

    async def seal_bundles(self) -> None:
        """Seal every approved incoming bundle whose log entries are witnessed; remove the
        spools of bundles not acknowledged within `bundles.spool_days`."""
        roster = self.store.require_roster()
        await asyncio.to_thread(self.sealer.expire)
        for outcome in await asyncio.to_thread(self.sealer.seal_ready, roster):
            if outcome.state == "waiting":
                log.info("bundle.seal_waiting", requester=outcome.requester, why=outcome.detail)

    async def receive_bundles(
        self, *, progress: TransferProgress | None = None, only: str | None = None
    ) -> list[BundleExchange]:
        """Receive every bundle being transferred to this node (or the one of request id
        `only`), each from where it stopped; store it once verified, then acknowledge it.
        Bundles delivered but not yet acknowledged are acknowledged again."""
        roster = self.store.require_roster()
        peers = {mb.state: (mb, cert) for mb, cert in self.peers(roster)}
        results: list[BundleExchange] = []
        for transfer in await asyncio.to_thread(self.receiver.transfers):
            if only is None or transfer.request_id == only:
                results.append(await self._receive(transfer, peers, progress))
        for transfer in await asyncio.to_thread(self.receiver.transfers, state="delivered"):
            if only is None or transfer.request_id == only:
                await self._acknowledge(transfer, peers)
        return results

    async def _receive(
        self,
        t: Transfer,
        peers: dict[str, tuple[Member, bytes]],
        progress: TransferProgress | None,
    ) -> BundleExchange:
        def done(state: str | None, error: str | None) -> BundleExchange:
            if error is not None:
                log.warning("bundle.transfer_interrupted", holder=t.holder, error=error)
            return BundleExchange(t.request_id, t.holder, state, error)

        if t.holder not in peers:
            return done(None, "not a reachable member")
        try:
            lock = await asyncio.to_thread(self.receiver.lock, t.row_id)
        except BundleBusy as e:
            return done(None, str(e))
        try:
            try:
                receiving = await asyncio.to_thread(self.receiver.resume, t.row_id)
            except StorageError as e:  # a damaged spool: start the transfer again
                await asyncio.to_thread(self.receiver.restart, t.row_id)
                return done(None, f"{e}; the transfer starts again")
            try:
                if progress is not None:
                    progress(t.request_id, receiving.offset, t.sealed_size)
                if not receiving.done:
                    async with self.client(*peers[t.holder]) as c:
                        await self._fetch(c, t, receiving, progress)
                await asyncio.to_thread(receiving.settle)
                await asyncio.to_thread(self.receiver.save_progress, t.row_id, receiving)
                if not receiving.done:
                    raise TransferFault("the holder ended the stream before its end")
            except (TransferFault, FederationError, OSError) as e:
                error = (
                    f"the bundle cannot be written to disk ({e.strerror or type(e).__name__}); "
                    "it continues from the last unit on disk once there is room"
                    if isinstance(e, OSError)
                    else str(e)
                )
                with contextlib.suppress(OSError):  # what is on disk is kept, nothing more
                    await asyncio.to_thread(self.receiver.save_progress, t.row_id, receiving)
                receiving.abort()
                if isinstance(e, TransferFault):
                    self.alert("bundle-transfer-fault", t.holder, str(e), {})
                return done(None, error)
            except BadBundle as e:  # a file does not match the manifest
                receiving.abort()
                await asyncio.to_thread(self.receiver.quarantine, t.row_id, str(e))
                return done("quarantined", str(e))
            except BaseException:
                receiving.abort()
                raise
            try:
                await asyncio.to_thread(self.receiver.store, t.row_id, receiving)
            except BadBundle as e:
                return done("quarantined", str(e))
            except StorageError as e:
                return done(None, str(e))
        finally:
            lock.close()
        await self._acknowledge(t, peers)
        return done("delivered", None)

    async def _fetch(
        self,
        client: PeerClient,
        t: Transfer,
        receiving: Receiving,
        progress: TransferProgress | None,
    ) -> None:
        """The holder's units into `receiving` until its end (or the stream's), read ahead
        while earlier ones are verified. One thread verifies them all, so that their
        buffers come from one allocator arena."""
        loop = asyncio.get_running_loop()
        units = client.fetch_bundle(t.bundle_id, receiving.offset)
        with ThreadPoolExecutor(1, thread_name_prefix="bundle-verify") as verifier:
            async with contextlib.aclosing(read_ahead(units, READ_AHEAD_UNITS)) as ahead:
                async for offset, data in ahead:
                    await loop.run_in_executor(verifier, receiving.feed, offset, data)
                    if progress is not None:
                        progress(t.request_id, receiving.offset, t.sealed_size)
                    if receiving.due:
                        await asyncio.to_thread(self.receiver.save_progress, t.row_id, receiving)
                    if receiving.done:
                        return

    async def _acknowledge(self, t: Transfer, peers: dict[str, tuple[Member, bytes]]) -> None:
        """Send the receipt; the holder refuses it while it has not recorded sending the
        end (it may have stopped just before): then ask it for the end, and send it again."""
        if t.holder not in peers:
            return
        receipt = await asyncio.to_thread(self.receiver.receipt, t.row_id)
        try:
            async with self.client(*peers[t.holder]) as c:
                try:
                    await c.ack_bundle(t.bundle_id, receipt)
                except PeerRefusedByError as e:
                    if e.code != grpc.StatusCode.FAILED_PRECONDITION:
                        raise
                    async for _unit in c.fetch_bundle(t.bundle_id, t.sealed_size):
                        break
                    await c.ack_bundle(t.bundle_id, receipt)
        except FederationError as e:
            log.warning("bundle.receipt_not_delivered", holder=t.holder, error=str(e))
            return
        await asyncio.to_thread(self.receiver.acknowledged, t.row_id)

    def keys_rotated(self, roster: Roster | None) -> bool:
        """Whether the keys on disk are no longer the ones this node runs with: `roster`,
        the one in force, named its next keys (made current here, node.keyrotation), here
        or in another process (`compact roster apply`)."""
        finish_rotation(self.config, roster)
        return running_keys_stale(self.config, self._running)

    async def run_forever(self, stop: asyncio.Event) -> None:
        """The background loop of `compact serve`: publish new records within a few seconds
        of their ingest, sync with every member each `sync_interval_seconds`, and each
        `bundles.poll_seconds` give members the matter revisions they lack and ask holders
        about this node's unsettled bundle requests."""
        interval = self.config.federation.sync_interval_seconds
        poll = self.config.bundles.poll_seconds
        tick = min(interval, poll, PUBLISH_POLL_SECONDS)
        next_sync = next_poll = 0.0
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            try:
                roster = self.store.roster()
                if await asyncio.to_thread(self.keys_rotated, roster):
                    log.info("keys.rotated_restarting")
                    self.rotated = True
                    stop.set()
                    break
                if roster is None:
                    await self._log_trail_if_pending()
                else:
                    if loop.time() >= next_sync:
                        next_sync = loop.time() + interval
                        await self.sync()
                    elif roster.oprf is not None:
                        await self._publish_if_changed()
                    else:
                        await self._log_trail_if_pending()
                    if loop.time() >= next_poll:
                        next_poll = loop.time() + poll
                        await self.share_matters()
                        await self.exchange_bundles()
                        await self.seal_bundles()
                        await self.receive_bundles()
            except FederationError as e:
                log.warning("federation_round_failed", error=str(e))
            except Exception:
                log.exception("federation_round_crashed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=tick)
