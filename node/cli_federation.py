"""`compact roster` and `compact oprf`: forming a compact and running the OPRF key ceremony.

The workflow (docs/roster.md, docs/oprf-ceremony.md):

1. every member exports its card: `compact roster card --out IL.card`
   (its endpoint, TLS pin, signing and encryption keys, and its TLS certificate);
2. one member assembles the next roster version from the cards and signs it:
   `compact roster propose --card ... --threshold N --expires DATE --out proposal.json`;
3. the other members check it (for version 1: compare the payload SHA-256 out of
   band) and add their signatures: `compact roster sign proposal.json`;
4. every member applies it: `compact roster apply proposal.json [--pin SHA256]`.

A **proposal file** is canonical JSON::

    {"certificates": {"IL": "<PEM>", ...}, "envelope": <DSSE envelope>,
     "format": "compact-roster-proposal-v1"}

The envelope's payload is *unverified* until `apply` verifies it against the
roster in force (or the pin, for version 1): `sign`, `ceremony` and the summaries
parse it only to show the operator what is being signed.

`compact oprf ceremony` enters the compact OPRF key's public record into a
proposal and seals one share to each member; `compact oprf import-share`
checks and stores this node's share once a roster carrying that record is in
force.

Heavy modules are imported inside the commands. node.cli is imported lazily as
well: node.cli registers these commands at its end, and under `python -m
node.cli` a top-level import of node.cli here would load a second copy of it
that imports this module while it is still half-initialised.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NoReturn, TypeVar

import click

from node.cli_auth import Access, declare, requires
from node.roles import Permission

if TYPE_CHECKING:
    from rich.console import Console

    from crypto import signing
    from crypto.dsse import Envelope
    from crypto.keystore import NodeKeys
    from federation.roster import Member, Roster
    from node.config import Config
    from node.fedstore import FederationStore

PROPOSAL_FORMAT: Final = "compact-roster-proposal-v1"
MAX_PROPOSAL_BYTES: Final = 4 * 1024 * 1024
MAX_SEALED_SHARE_BYTES: Final = 8 * 1024
_PROPOSAL_FIELDS: Final = frozenset({"format", "envelope", "certificates"})
_WILDCARD_HOSTS: Final = frozenset({"", "0.0.0.0", "::"})  # noqa: S104 - refused, not bound

F = TypeVar("F", bound=Callable[..., Any])


# --- helpers shared with node.cli ---------------------------------------------------------


def _fail(message: str) -> NoReturn:
    from rich.markup import escape

    from node.cli import _fail as fail

    fail(escape(message))  # messages name files and quote their contents: no Rich markup
    raise AssertionError  # unreachable: _fail exits


def _stderr() -> Console:
    from node.cli import _stderr as stderr

    return stderr()


def _say(console: Console, text: str) -> None:
    """Print text that may hold data from files (no Rich markup, no highlighting)."""
    console.print(text, markup=False, highlight=False)


def _warn(text: str) -> None:
    from rich.markup import escape

    _stderr().print(f"[yellow]warning:[/yellow] {escape(text)}", highlight=False)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class _Node:
    config: Config
    keys: NodeKeys
    store: FederationStore
    # Keys made by `compact keys next` for a roster update, if any wait (node.keyrotation).
    next_keys: NodeKeys | None = None

    @property
    def signer(self) -> signing.SigningKey:
        from crypto import signing

        return signing.SigningKey(self.keys.signing_key)

    @property
    def next_signer(self) -> signing.SigningKey | None:
        from crypto import signing

        return signing.SigningKey(self.next_keys.signing_key) if self.next_keys else None


def _unlock(config: Config, passphrase_file: Path | None) -> NodeKeys:
    return _unlock_with_next(config, passphrase_file)[0]


def _unlock_with_next(
    config: Config, passphrase_file: Path | None
) -> tuple[NodeKeys, NodeKeys | None]:
    """The node's keys and its next keys (if any wait), opened with one secret."""
    from node.cli import _secret
    from node.errors import NodeError
    from node.keyrotation import open_next
    from node.setup import unlock

    try:
        secret = _secret(config, passphrase_file)
        return unlock(config, secret), open_next(config, secret)
    except NodeError as e:
        _fail(str(e))


@contextlib.contextmanager
def _open_node(data_dir: Path, passphrase_file: Path | None) -> Iterator[_Node]:
    """The node's configuration, keys and federation store; the database is closed after."""
    from node.cli import _load
    from node.errors import NodeError
    from node.fedstore import FederationStore
    from node.setup import open_storage

    config = _load(data_dir)
    keys, next_keys = _unlock_with_next(config, passphrase_file)
    try:
        storage = open_storage(config, keys)
    except NodeError as e:
        _fail(str(e))
    try:
        store = FederationStore(storage.db, storage.fields, config.node.state)
        yield _Node(config, keys, store, next_keys)
    finally:
        storage.db.dispose()


def _is_member(key: signing.PublicKey, *rosters: Roster | None) -> bool:
    return any(m.signing_key == key for r in rosters if r is not None for m in r.members)


def _read_limited(path: Path, limit: int) -> bytes:
    """At most `limit` + 1 bytes of `path` (the parsers refuse anything longer)."""
    try:
        with path.open("rb") as f:
            return f.read(limit + 1)
    except OSError as e:
        _fail(f"{path}: cannot be read ({e.strerror})")


def _write_atomic(path: Path, data: bytes) -> None:
    """Write `path` as a whole or not at all (a temporary file, then os.replace)."""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        _fail(f"{path}: cannot be written ({e.strerror})")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # a proposal or a card holds public keys and certificates only
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        _fail(f"{path}: cannot be written ({e.strerror})")


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


# --- proposal files -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Proposal:
    envelope: Envelope
    certificates: dict[str, bytes]  # by state, PEM
    roster: Roster  # parsed from the unverified payload: to show and check, never to trust


def _proposal_bytes(envelope: Envelope, certificates: dict[str, bytes]) -> bytes:
    from federation.encoding import canonical_json

    return canonical_json(
        {
            "format": PROPOSAL_FORMAT,
            "envelope": json.loads(envelope.to_json()),
            "certificates": {s: pem.decode("ascii") for s, pem in sorted(certificates.items())},
        }
    )


def _read_proposal(path: Path) -> _Proposal:
    from crypto.dsse import Envelope
    from crypto.errors import CryptoError
    from federation.encoding import canonical_json, load_json_object
    from federation.errors import RosterError
    from federation.roster import PAYLOAD_TYPE, Roster

    data = _read_limited(path, MAX_PROPOSAL_BYTES)
    try:
        obj = load_json_object(data, limit=MAX_PROPOSAL_BYTES)
        if set(obj) != _PROPOSAL_FIELDS or obj["format"] != PROPOSAL_FORMAT:
            raise ValueError("not a roster proposal (unknown format or fields)")
        if not isinstance(obj["envelope"], dict):
            raise ValueError("the envelope must be a JSON object")
        envelope = Envelope.from_json(canonical_json(obj["envelope"]))
        if envelope.payload_type != PAYLOAD_TYPE:
            raise ValueError("the envelope does not hold a roster")
        certificates = obj["certificates"]
        if not isinstance(certificates, dict) or not all(
            isinstance(state, str) and isinstance(pem, str) and pem.isascii()
            for state, pem in certificates.items()
        ):
            raise ValueError("certificates must map states to PEM text")
        roster = Roster.from_payload(envelope.payload)
    except (ValueError, CryptoError, RosterError) as e:
        _fail(f"{path}: {e}")
    return _Proposal(envelope, {s: p.encode("ascii") for s, p in certificates.items()}, roster)


def _unsigned(roster: Roster) -> Envelope:
    from crypto.dsse import Envelope
    from federation.roster import PAYLOAD_TYPE

    return Envelope(payload_type=PAYLOAD_TYPE, payload=roster.payload(), signatures=())


def _signed_by(envelope: Envelope, members: Iterable[Member]) -> tuple[list[str], list[str]]:
    """The states whose key made a valid signature on `envelope`, and the other key ids."""
    from crypto.errors import VerificationError

    by_id: dict[str, Member] = {m.signing_key.key_id: m for m in members}
    message = envelope.pae()
    states: set[str] = set()
    others: list[str] = []
    for sig in envelope.signatures:
        member = by_id.get(sig.keyid)
        if member is None:
            others.append(sig.keyid)
            continue
        try:
            member.signing_key.verify(message, sig.sig)
        except VerificationError:
            others.append(sig.keyid)
            continue
        states.add(member.state)
    return sorted(states), others


# --- presenting a roster ------------------------------------------------------------------


def _time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _print_summary(console: Console, roster: Roster, title: str) -> None:
    _say(
        console,
        f"{title}: version {roster.version}, {len(roster.members)} member(s), "
        f"threshold {roster.threshold}, expires {_time(roster.expires)}",
    )
    for m in roster.members:
        _say(
            console,
            f"  {m.state}  {m.endpoint}  tls pin {m.tls_pin}  signing key {m.signing_key.key_id}",
        )
    if roster.oprf is None:
        _say(console, "  OPRF record: none")
    else:
        _say(
            console,
            f"  OPRF record: threshold {roster.oprf.threshold}, "
            f"public key {roster.oprf.public_key.to_bytes().hex()}",
        )
    _say(console, f"payload SHA-256: {roster.payload_sha256()}")


def _oprf_json(roster: Roster) -> dict[str, Any] | None:
    from federation.ceremony import public_sha256

    if roster.oprf is None:
        return None
    return {
        "threshold": roster.oprf.threshold,
        "public_key": roster.oprf.public_key.to_bytes().hex(),
        "oprf_sha256": public_sha256(roster.oprf),
        "commitments": {
            state: {"index": c.index, "element": c.element.to_bytes().hex()}
            for state, c in sorted(roster.oprf.commitments.items())
        },
    }


# --- compact roster -----------------------------------------------------------------------


def _endpoint(config: Config) -> str:
    """The host:port other members dial, as this node's card names it."""
    from node.config import parse_host_port
    from node.errors import ConfigError

    if config.federation.endpoint:
        return config.federation.endpoint
    try:
        host, port = parse_host_port(config.federation.listen, setting="federation.listen")
    except ConfigError as e:
        _fail(str(e))
    if port == 0:
        info = config.run_dir / "federation.json"
        try:
            data = json.loads(info.read_text(encoding="utf-8"))
            host, port = data["host"], data["port"]
            if not isinstance(host, str) or type(port) is not int or not 0 < port < 65536:
                raise ValueError("bad host or port")
        except FileNotFoundError:
            _fail(
                "federation.listen lets the OS choose the port (port 0) and no server has "
                f"recorded it in {info}: start `compact serve` first, or set "
                "federation.endpoint in compact.toml"
            )
        except (OSError, ValueError, KeyError, TypeError):
            _fail(f"{info} cannot be read: restart `compact serve` or set federation.endpoint")
    if host in _WILDCARD_HOSTS:
        _fail(
            "federation.listen binds every interface, which other members cannot dial: "
            "set federation.endpoint in compact.toml to the host:port they should use"
        )
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _parse_expiry(text: str) -> datetime:
    """YYYY-MM-DD (midnight UTC) or an ISO 8601 time with a UTC offset, whole seconds."""
    try:
        if len(text) == 10:
            day = datetime.strptime(text, "%Y-%m-%d")
            return day.replace(tzinfo=UTC)
        value = datetime.fromisoformat(text)
    except ValueError:
        _fail(f"--expires {text}: expected YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ")
    if value.tzinfo is None:
        _fail(f"--expires {text}: give a time zone, e.g. {text}Z for UTC")
    if value.microsecond:
        _fail(f"--expires {text}: whole seconds only")
    return value.astimezone(UTC)


def _read_card(path: Path) -> tuple[Member, bytes]:
    from federation.errors import RosterError
    from federation.roster import MAX_CARD_FILE_BYTES, parse_member_card_file

    data = _read_limited(path, MAX_CARD_FILE_BYTES)
    try:
        return parse_member_card_file(data)
    except RosterError as e:
        _fail(f"{path}: {e}")


def register(main: click.Group) -> None:
    """Add the `roster` and `oprf` command groups to the `compact` command line."""
    from node.cli import data_dir_option, json_option, passphrase_option

    def node_options(f: F) -> F:
        return data_dir_option(passphrase_option(f))

    proposal_argument = click.argument(
        "proposal_path", metavar="PROPOSAL", type=click.Path(dir_okay=False, path_type=Path)
    )

    @main.group()
    def roster() -> None:
        """Form the compact and change its membership (signed roster versions)."""

    @roster.command("card")
    @node_options
    @click.option(
        "--out",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Write the card here instead of printing it.",
    )
    @declare(Access.OPERATOR)
    def roster_card(data_dir: Path, passphrase_file: Path | None, out: Path | None) -> None:
        """This node's member card: endpoint, TLS certificate and pin, public keys."""
        from crypto import signing, x25519
        from crypto.tls import certificate_fingerprint
        from federation.errors import RosterError
        from federation.roster import Member, member_card_file, parse_member_card_file
        from node.cli import _load

        config = _load(data_dir)
        keys = _unlock(config, passphrase_file)
        endpoint = _endpoint(config)
        cert_path = config.path(config.keys.tls_certificate)
        try:
            pem = cert_path.read_bytes()
            pin = certificate_fingerprint(pem)
        except (OSError, ValueError):
            _fail(f"the node's TLS certificate ({cert_path}) cannot be read")
        member = Member(
            state=config.node.state,
            endpoint=endpoint,
            tls_pin=pin,
            signing_key=signing.SigningKey(keys.signing_key).public_key,
            encryption_key=x25519.PrivateKey(keys.encryption_key).public_key,
        )
        card = member_card_file(member, pem)
        try:
            parse_member_card_file(card)  # what the other members will run on it
        except RosterError as e:
            _fail(f"this node's card would be refused: {e}")
        if out is None:
            click.echo(card.decode("ascii"))
            return
        _write_atomic(out, card)
        _say(_stderr(), f"wrote the member card of {member.state} to {out}")
        _say(_stderr(), f"  endpoint {member.endpoint}, TLS pin {member.tls_pin}")

    @roster.command("propose")
    @click.option(
        "--card",
        "cards",
        multiple=True,
        type=click.Path(dir_okay=False, path_type=Path),
        help="A member card (new member, rotated keys or moved endpoint); repeat.",
    )
    @click.option(
        "--remove", "removals", multiple=True, metavar="STATE", help="Drop a member; repeat."
    )
    @click.option(
        "--threshold", type=int, required=True, help="Signatures needed for the next change."
    )
    @click.option(
        "--expires",
        "expires_text",
        required=True,
        metavar="YYYY-MM-DD|YYYY-MM-DDTHH:MM:SSZ",
        help="When this version stops being valid (UTC).",
    )
    @click.option(
        "--out",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Write the proposal here instead of printing it.",
    )
    @node_options
    @declare(Access.OPERATOR)
    def roster_propose(
        cards: tuple[Path, ...],
        removals: tuple[str, ...],
        threshold: int,
        expires_text: str,
        out: Path | None,
        data_dir: Path,
        passphrase_file: Path | None,
    ) -> None:
        """The next roster version: the one in force, changed by cards and removals."""
        from federation.errors import RosterError
        from federation.roster import Roster, cosign_roster, sign_roster

        expires = _parse_expiry(expires_text)
        if expires <= _now():
            _fail(f"--expires {expires_text} is in the past")
        carded: dict[str, tuple[Member, bytes]] = {}
        for path in cards:
            member, pem = _read_card(path)
            if member.state in carded:
                _fail(f"{path}: a second card for {member.state}")
            carded[member.state] = (member, pem)
        removed = {state.upper() for state in removals}
        with _open_node(data_dir, passphrase_file) as node:
            current = node.store.roster()
            stored = node.store.certificates(current) if current is not None else {}
            signer, next_signer = node.signer, node.next_signer
        members: dict[str, Member] = {m.state: m for m in current.members} if current else {}
        certificates = {state: pem for state, pem in stored.items() if state in members}
        for state in sorted(removed):
            if state not in members:
                _fail(f"--remove {state}: not a member of the roster in force")
            if state in carded:
                _fail(f"--remove {state}: a card for {state} was given as well")
            del members[state]
            certificates.pop(state, None)
        for state, (member, pem) in carded.items():
            members[state] = member
            certificates[state] = pem
        if not members:
            _fail("the proposed roster has no members: give at least one --card")
        if not 1 <= threshold <= len(members):
            _fail(
                f"--threshold {threshold}: must be between 1 and {len(members)} "
                "(the number of members)"
            )
        oprf = None
        # The share commitments are per state: rotated keys keep the compact's OPRF key
        # (and so every pseudonym); a member joining or leaving needs a new ceremony.
        if (
            current is not None
            and current.oprf is not None
            and {m.state for m in current.members} == set(members)
        ):
            oprf = current.oprf
        try:
            proposed = Roster(
                version=current.version + 1 if current else 1,
                expires=expires,
                threshold=threshold,
                members=tuple(members[s] for s in sorted(members)),
                oprf=oprf,
            )
        except RosterError as e:
            _fail(str(e))
        if _is_member(signer.public_key, proposed, current):
            envelope = sign_roster(proposed, signer)
            if next_signer is not None and _is_member(next_signer.public_key, proposed):
                envelope = cosign_roster(envelope, next_signer)
        else:
            envelope = _unsigned(proposed)
        data = _proposal_bytes(envelope, certificates)
        if out is None:
            click.echo(data.decode("ascii"))
        else:
            _write_atomic(out, data)
        err = _stderr()
        _print_summary(err, proposed, "proposed roster")
        if current is not None and current.oprf is not None and oprf is None:
            _warn(
                "the members change, so the OPRF record is not carried over: a new key "
                "ceremony is needed (compact oprf ceremony)"
            )
        elif oprf is None:
            _say(err, "no OPRF record yet: run `compact oprf ceremony` on this proposal")
        missing = sorted(set(members) - set(certificates))
        if missing:
            _warn(f"no TLS certificate for {', '.join(missing)}: give their cards")
        if envelope.signatures:
            _say(err, f"signed by this node ({node.config.node.state})")
        else:
            _warn("this node is not a member of the proposed or current roster: not signed")
        if proposed.version == 1:
            _say(
                err,
                "Founding members: compare this payload SHA-256 out of band (read aloud, on "
                "paper) before signing, and apply with --pin " + proposed.payload_sha256(),
            )
        if out is not None:
            _say(err, f"wrote {out}")

    @roster.command("sign")
    @proposal_argument
    @node_options
    @declare(Access.OPERATOR)
    def roster_sign(proposal_path: Path, data_dir: Path, passphrase_file: Path | None) -> None:
        """Add this node's signature to a roster proposal (rewrites the file)."""
        from crypto.dsse import Envelope
        from federation.roster import cosign_roster

        proposal = _read_proposal(proposal_path)
        with _open_node(data_dir, passphrase_file) as node:
            current = node.store.roster()
            signer, next_signer = node.signer, node.next_signer
        expected = current.version + 1 if current else 1
        if proposal.roster.version != expected:
            _fail(
                f"{proposal_path} proposes roster version {proposal.roster.version}, "
                f"but the next version here is {expected}"
            )
        if not _is_member(signer.public_key, proposal.roster, current):
            _fail(
                "this node's signing key is not a member's in the proposed roster or in the "
                "one in force: its signature would count for nothing"
            )
        before = proposal.envelope
        signers = [signer]
        if next_signer is not None and _is_member(next_signer.public_key, proposal.roster):
            # The proposal names this node's next keys: the new key proves possession.
            signers.append(next_signer)
        mine = {k.key_id for k in signers}
        envelope = Envelope(
            before.payload_type,
            before.payload,
            tuple(s for s in before.signatures if s.keyid not in mine),
        )
        for key in signers:
            envelope = cosign_roster(envelope, key)
        err = _stderr()
        _print_summary(err, proposal.roster, "roster proposal")
        if set(envelope.signatures) == set(before.signatures):
            _say(err, "already signed by this node: nothing changed")
        else:
            _write_atomic(proposal_path, _proposal_bytes(envelope, proposal.certificates))
            _say(err, f"signed {proposal_path} as {node.config.node.state}")
        signed, _ = _signed_by(
            envelope, [*proposal.roster.members, *(current.members if current else ())]
        )
        needs = f"{proposal.roster.threshold} of its own members"
        if current is not None:
            needs = f"{current.threshold} of version {current.version}'s members and " + needs
        _say(err, f"signed by: {', '.join(signed) or 'no member yet'} (it needs {needs})")

    @roster.command("apply")
    @click.argument(
        "proposal_paths",
        metavar="PROPOSAL...",
        nargs=-1,
        required=True,
        type=click.Path(dir_okay=False, path_type=Path),
    )
    @click.option(
        "--pin",
        metavar="SHA256",
        default=None,
        help="Version 1 only: the payload SHA-256 the founding members compared out of band.",
    )
    @node_options
    @declare(Access.OPERATOR)
    def roster_apply(
        proposal_paths: tuple[Path, ...],
        pin: str | None,
        data_dir: Path,
        passphrase_file: Path | None,
    ) -> None:
        """Verify signed roster versions and put them in force, in order (and, if the newest
        names this node's next keys, make them current). Give several to catch up: only
        the last must be in force, the ones before it may have expired."""
        from federation.errors import FederationError, RosterRollbackError
        from node.errors import NodeError
        from node.fedstore import RosterWalkError
        from node.keyrotation import RETIRED_DIR, finish_rotation

        proposals = [(path, _read_proposal(path)) for path in proposal_paths]
        with _open_node(data_dir, passphrase_file) as node:
            current = node.store.roster()
            try:
                roster = node.store.apply_rosters(
                    [(p.envelope, list(p.certificates.values())) for _, p in proposals],
                    now=_now(),
                    pinned_sha256=pin,
                )
            except RosterWalkError as e:
                path = proposals[e.position][0]
                in_force = ""
                if isinstance(e.cause, RosterRollbackError) and current is not None:
                    in_force = f" (version {current.version} is in force here)"
                _fail(f"{path}: {e}{in_force}; nothing was applied")
            try:
                held = node.store.share(roster) is not None
            except FederationError:
                held = False
            state = node.config.node.state
            own_key = node.signer.public_key
            try:
                rotated = finish_rotation(node.config, roster)
            except NodeError as e:
                _fail(f"roster version {roster.version} is in force, but {e}")
        err = _stderr()
        _say(
            err,
            f"roster version {roster.version} is now in force ({len(roster.members)} members, "
            f"threshold {roster.threshold}, expires {_time(roster.expires)})",
        )
        me = roster.member(state)
        if rotated:
            _say(
                err,
                f"it names this node's next keys: they are now its keys (the old ones are in "
                f"keys/{RETIRED_DIR}/). A running `compact serve` switches to them by itself.",
            )
        elif me is None:
            _warn(f"{state} is not a member of this roster version")
        elif me.signing_key != own_key:
            _warn(f"this roster names another signing key for {state} than this node's")
        if roster.oprf is not None and not held and me is not None:
            _say(
                err,
                "it carries an OPRF record: import this node's share with "
                f"`compact oprf import-share share-{state}.sealed`",
            )

    @roster.command("show")
    @node_options
    @json_option
    @requires(Permission.READ)
    def roster_show(data_dir: Path, passphrase_file: Path | None, as_json: bool) -> None:
        """The roster in force: members, OPRF record, and who signed it."""
        from crypto.dsse import Envelope
        from federation.errors import FederationError
        from federation.roster import Roster

        with _open_node(data_dir, passphrase_file) as node:
            try:
                roster = node.store.require_roster()
            except FederationError as e:
                _fail(str(e))
            envelopes = node.store.roster_envelopes(after_version=roster.version - 2)
            certificates = node.store.certificates(roster)
            state = node.config.node.state
        # Stored only after verification (node.fedstore).
        stored = Envelope.from_json(envelopes[-1])
        previous = (
            Roster.from_payload(Envelope.from_json(envelopes[0]).payload)
            if len(envelopes) > 1
            else None
        )
        signed, others = _signed_by(
            stored, [*roster.members, *(previous.members if previous else ())]
        )
        members = [
            {
                **m.to_json(),
                "signing_key_id": m.signing_key.key_id,
                "certificate_held": m.state in certificates,
                "this_node": m.state == state,
            }
            for m in roster.members
        ]
        if as_json:
            view = {
                "version": roster.version,
                "expires": _time(roster.expires),
                "threshold": roster.threshold,
                "payload_sha256": roster.payload_sha256(),
                "members": members,
                "oprf": _oprf_json(roster),
                "signed_by": signed,
                "other_signatures": others,
            }
            click.echo(json.dumps(view, indent=2))
            return
        _print_show(roster, members, signed, others)

    @main.group()
    def oprf() -> None:
        """The compact OPRF key: the key ceremony and this node's share."""

    @oprf.command("ceremony")
    @proposal_argument
    @click.option("--threshold", type=int, required=True, help="Share holders needed (t of n).")
    @click.option(
        "--out-dir",
        type=click.Path(file_okay=False, path_type=Path),
        required=True,
        help="A new or empty folder for proposal.json and the sealed shares.",
    )
    @node_options
    @declare(Access.OPERATOR)
    def oprf_ceremony(
        proposal_path: Path,
        threshold: int,
        out_dir: Path,
        data_dir: Path,
        passphrase_file: Path | None,
    ) -> None:
        """Make the compact OPRF key, seal a share to each member, enter its record."""
        from federation.ceremony import public_sha256, run_ceremony, threshold_problem
        from federation.errors import CeremonyError
        from federation.roster import sign_roster

        proposal = _read_proposal(proposal_path)
        if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
            _fail(f"{out_dir} exists and is not empty: give a new or empty folder")
        problem = threshold_problem(threshold, len(proposal.roster.members))
        if problem:
            _fail(f"--threshold {threshold}: {problem}")
        signer = _ceremony_signer(data_dir, passphrase_file, proposal.roster)
        try:
            result = run_ceremony(proposal.roster, threshold=threshold)
        except CeremonyError as e:
            _fail(str(e))
        envelope = sign_roster(result.roster, signer) if signer else _unsigned(result.roster)
        try:
            out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            for state, sealed in sorted(result.sealed_shares.items()):
                _write_private(out_dir / f"share-{state}.sealed", sealed)
        except OSError as e:
            _fail(f"{out_dir}: cannot write the shares ({e.strerror})")
        _write_atomic(out_dir / "proposal.json", _proposal_bytes(envelope, proposal.certificates))
        err = _stderr()
        _print_summary(err, result.roster, "roster proposal with the OPRF record")
        _say(err, f"OPRF record SHA-256: {public_sha256(result.public)}")
        if proposal.envelope.signatures:
            _say(err, "the signatures on the input proposal no longer apply (the payload changed)")
        _say(err, f"wrote {out_dir / 'proposal.json'} ({'signed' if signer else 'unsigned'})")
        for state in sorted(result.sealed_shares):
            _say(err, f"wrote {out_dir / f'share-{state}.sealed'} for {state}")
        proposal_json = out_dir / "proposal.json"
        for line in (
            "Next:",
            f"  1. the members sign it:        compact roster sign {proposal_json}",
            f"  2. every member applies it:    compact roster apply {proposal_json}",
            "  3. each member imports its share (sent to it alone):",
            "                                 compact oprf import-share share-<STATE>.sealed",
            "Each share is sealed to its member's key; no copy of the key was kept.",
        ):
            _say(err, line)

    @oprf.command("import-share")
    @click.argument("share_path", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path))
    @node_options
    @declare(Access.OPERATOR)
    def oprf_import_share(share_path: Path, data_dir: Path, passphrase_file: Path | None) -> None:
        """Check this node's sealed share against the roster in force and store it."""
        from crypto import x25519
        from federation.errors import FederationError

        sealed = _read_limited(share_path, MAX_SEALED_SHARE_BYTES)
        with _open_node(data_dir, passphrase_file) as node:
            try:
                index = node.store.import_share(
                    sealed, x25519.PrivateKey(node.keys.encryption_key), now=_now()
                )
            except FederationError as e:
                _fail(f"{share_path}: {e}; nothing was stored")
            roster = node.store.require_roster()
        assert roster.oprf is not None  # import_share refuses a roster without one
        _say(
            _stderr(),
            f"imported share {index} of the compact OPRF key (threshold {roster.oprf.threshold} "
            f"of {len(roster.members)}, roster version {roster.version})",
        )

    @oprf.command("status")
    @node_options
    @json_option
    @requires(Permission.READ)
    def oprf_status(data_dir: Path, passphrase_file: Path | None, as_json: bool) -> None:
        """Whether the roster carries an OPRF record and this node holds its share."""
        from federation.ceremony import public_sha256
        from federation.errors import FederationError

        with _open_node(data_dir, passphrase_file) as node:
            try:
                roster = node.store.require_roster()
                share = node.store.share(roster)
            except FederationError as e:
                _fail(str(e))
        view: dict[str, Any] = {
            "roster_version": roster.version,
            "oprf": roster.oprf is not None,
            "threshold": roster.oprf.threshold if roster.oprf else None,
            "public_key": roster.oprf.public_key.to_bytes().hex() if roster.oprf else None,
            "oprf_sha256": public_sha256(roster.oprf) if roster.oprf else None,
            "share_held": share is not None,
            "share_index": share.index if share else None,
        }
        if as_json:
            click.echo(json.dumps(view, indent=2))
            return
        from node.render import stdout_console

        out = stdout_console()
        if roster.oprf is None:
            _say(out, f"roster version {roster.version} has no OPRF record yet")
            return
        _say(out, f"roster version {roster.version}: OPRF threshold {view['threshold']}")
        _say(out, f"  public key   {view['public_key']}")
        _say(out, f"  record       {view['oprf_sha256']}")
        if share is None:
            _say(out, "  this node    holds no share (compact oprf import-share FILE)")
        else:
            _say(out, f"  this node    holds share {share.index}")


def _ceremony_signer(
    data_dir: Path, passphrase_file: Path | None, proposed: Roster
) -> signing.SigningKey | None:
    """This node's signing key if it may sign `proposed`; None (with a notice) otherwise."""
    from crypto import signing
    from node.cli import _secret
    from node.config import load_config
    from node.errors import NodeError
    from node.fedstore import FederationStore
    from node.setup import open_storage, unlock

    try:
        config = load_config(data_dir)
    except NodeError:
        _warn(f"no node in {data_dir}: the proposal is written unsigned")
        return None
    try:
        keys = unlock(config, _secret(config, passphrase_file))
    except NodeError as e:
        _warn(f"the keys cannot be unlocked ({e}): the proposal is written unsigned")
        return None
    signer = signing.SigningKey(keys.signing_key)
    current = None
    with contextlib.suppress(NodeError):
        storage = open_storage(config, keys)
        try:
            current = FederationStore(storage.db, storage.fields, config.node.state).roster()
        finally:
            storage.db.dispose()
    if not _is_member(signer.public_key, proposed, current):
        _warn("this node is not a member: the proposal is written unsigned")
        return None
    return signer


def _print_show(
    roster: Roster, members: list[dict[str, Any]], signed: list[str], others: list[str]
) -> None:
    from rich.table import Table
    from rich.text import Text

    from node.render import stdout_console

    out = stdout_console()
    _say(
        out,
        f"roster version {roster.version}: {len(roster.members)} member(s), threshold "
        f"{roster.threshold}, expires {_time(roster.expires)}",
    )
    _say(out, f"payload SHA-256 {roster.payload_sha256()}")
    table = Table()
    for name in ("state", "endpoint", "TLS pin", "signing key id", "certificate", "signed"):
        table.add_column(name, overflow="fold")
    for m in members:
        table.add_row(
            Text(m["state"] + (" (this node)" if m["this_node"] else "")),
            Text(m["endpoint"]),
            Text(m["tls_pin"]),
            Text(m["signing_key_id"]),
            "held" if m["certificate_held"] else "MISSING",
            "yes" if m["state"] in signed else "",
        )
    out.print(table)
    oprf = _oprf_json(roster)
    if oprf is None:
        _say(out, "OPRF record: none (compact oprf ceremony)")
    else:
        _say(out, f"OPRF record: threshold {oprf['threshold']}, public key {oprf['public_key']}")
        for state, c in oprf["commitments"].items():
            _say(out, f"  {state}  share {c['index']}  commitment {c['element']}")
    _say(out, f"signed by: {', '.join(signed) or 'nobody known'}")
    if others:
        _say(out, f"other signatures (not by a member): {', '.join(others)}")
