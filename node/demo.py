"""`compact demo`: a three-state compact on this machine, from forming it to a verified exhibit.

Three nodes (CA, IL, MN) in one folder, SQLite each, every port on 127.0.0.1 chosen by
the operating system. Every step is a `compact` command an operator would type, run as a
child process and shown before it runs; the nodes are `compact serve` processes. Steps:

1. **Nodes**: `compact init` for each state, keys sealed under a key file kept beside
   (not inside) the node's folder.
2. **Compact**: member cards, a roster proposed by CA, the OPRF key ceremony (threshold
   2), IL's signature, the roster applied on every node with the founders' pin, and each
   node's sealed OPRF share imported.
3. **Incidents**: seeded synthetic incidents of every state with planted cross-state
   patterns (`bench.planted`: travelling agents, a team, masked agents, a surge), one IL
   incident with two evidence files; `compact ingest` on each node.
4. **Serve and sync**: `compact serve` on each node (syncing every few seconds), then
   `compact sync` until every node holds every other's index and has witnessed its log.
5. **Analysis** on IL's replica: `compact agents matches`, `compact patterns units` and
   `surges`, and the hits raised for IL.
6. **Bundle**: MN asks IL for the incident with evidence; IL's policy queues it (sharing
   `index`), IL's reviewer approves it, MN receives and verifies it.
7. **Matter and exhibits**: MN opens a matter with IL and CA, adds the received files as
   an exhibit, exports a package once two other states have witnessed the logs involved,
   and `compact verify` checks it offline against the roster pin.

A bar under each step's title shows the steps done; each wait is a progress bar (the
sync's counts the entries replicated and logs witnessed). Any step that fails stops the
demo with its command's output (exit status 1); the nodes are stopped unless `--keep`
asked for them to stay.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shlex
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.progress_bar import ProgressBar
from rich.table import Table

from node.config import set_setting

STATES: Final = ("CA", "IL", "MN")
SEED: Final = 7
THRESHOLD: Final = 2
SYNC_SECONDS: Final = 2.0
MATTER_TITLE: Final = "Doe v. Noem"
MATTER_ID: Final = "MN:DOE-V-NOEM"
PURPOSE: Final = "Doe v. Noem: the same agent stopped the plaintiff in Minnesota"
_SHOWN: Final = 6  # rows of each report printed
#: The people the demo acts as: (state, user name) -> role (docs/roles.md).
USERS: Final = {
    ("IL", "analyst.ruiz"): "analyst",
    ("IL", "reviewer.king"): "reviewer",
    ("MN", "analyst.ortiz"): "analyst",
    ("MN", "atty.chen"): "litigator",
}


class DemoFailed(Exception):
    """A step did not do what it should: its name and what happened."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(f"{step}: {message}")
        self.step = step
        self.message = message


@dataclass
class DemoNode:
    state: str
    data_dir: Path
    key_file: Path
    federation_port: int
    proc: subprocess.Popen[bytes] | None = None
    endpoint: str = ""

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / "logs" / f"{self.state.lower()}-serve.log"


@dataclass
class Findings:
    """What the demo found and made, for the summary (and for tests)."""

    pin: str = ""
    incidents: dict[str, int] = field(default_factory=dict)
    matches: int = 0
    travellers_planted: int = 0
    hits: int = 0
    evidence_incident: str = ""
    request_id: str = ""
    package: Path | None = None
    exhibits: int = 0
    audited: int = 0


class PortReservations:
    """TCP ports on 127.0.0.1 that the OS chose, each held by a bound (not listening)
    socket until `release` just before the node that will listen on it starts.

    A node's federation port must be known before it serves (it is in the roster), so it
    is chosen first and bound later; held meanwhile, it cannot be taken by another
    process's listener or outgoing connection, which a port only looked up and let go
    could be. At most `limit` are held: the oldest is let go first."""

    def __init__(self, limit: int = 64) -> None:
        self._held: dict[int, socket.socket] = {}
        self._limit = limit

    def reserve(self) -> int:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        except OSError:
            sock.close()
            raise
        self._held[port] = sock
        while len(self._held) > self._limit:
            self.release(next(iter(self._held)))
        return port

    def release(self, port: int) -> None:
        """Let `port` go (a port not held is ignored)."""
        sock = self._held.pop(port, None)
        if sock is not None:
            sock.close()

    def release_all(self) -> None:
        for port in list(self._held):
            self.release(port)


def _png(width: int, height: int, seed: int) -> bytes:
    """A small grey-scale PNG (a stand-in for a photograph): valid, and different per seed."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(
        b"\x00" + bytes((x * 7 + y * 3 + seed * 31) % 256 for x in range(width))
        for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 9))
        + chunk(b"IEND", b"")
    )


class Demo:
    """The demo in `root` (an empty or new folder); `run()` does every step."""

    def __init__(
        self,
        root: Path,
        *,
        console: Console,
        sync_seconds: float = SYNC_SECONDS,
        timeout: float = 300.0,
    ) -> None:
        self.root = root.absolute()
        self.console = console
        self.sync_seconds = sync_seconds
        self.timeout = timeout
        self.nodes: dict[str, DemoNode] = {}
        self.ports = PortReservations()
        self.found = Findings()
        self._step = ""
        self._numbered = 0
        # the identifier keys and IL external id of the incident with evidence
        self._evidence: tuple[list[str], str] = ([], "")

    # --- running commands --------------------------------------------------------------------

    def _section(self, title: str, total: int = 8) -> None:
        self._numbered += 1
        self._step = title
        self.console.rule(f"[bold]{self._numbered}/{total}  {title}", align="left")
        done = Table.grid(padding=(0, 1))
        done.add_row(
            ProgressBar(total=total, completed=self._numbered - 1, width=40),
            f"{self._numbered - 1} of {total} steps done",
        )
        self.console.print(done)

    def _say(self, text: str) -> None:
        self.console.print(text, highlight=False)

    def token_file(self, state: str, user: str) -> Path:
        return self.root / "tokens" / f"{state.lower()}-{user}.token"

    def compact(
        self,
        state: str | None,
        *args: str,
        show: bool = True,
        echo: bool = False,
        user: str | None = None,
        expect: int = 0,
    ) -> subprocess.CompletedProcess[str]:
        """`compact ARGS [--data-dir STATE's folder]` in a child process, shown first, as
        `user` of that state (else the node's admin); one that does not exit `expect`
        ends the step."""
        argv = list(args)
        env = {**os.environ, "COLUMNS": str(max(self.console.width, 120))}
        env.pop("COMPACT_TOKEN_FILE", None)
        prefix = ""
        if state is not None:
            argv += ["--data-dir", str(self.nodes[state].data_dir)]
        if user is not None and state is not None:
            env["COMPACT_TOKEN_FILE"] = str(self.token_file(state, user))
            prefix = f"COMPACT_TOKEN_FILE={self._short(env['COMPACT_TOKEN_FILE'])} "
        if show:
            shown = " ".join(shlex.quote(self._short(a)) for a in argv)
            self.console.print(f"[dim]$ {prefix}compact {shown}[/dim]", highlight=False)
        result = subprocess.run(
            [sys.executable, "-m", "node.cli", *argv],
            capture_output=True, text=True, stdin=subprocess.DEVNULL, cwd=self.root,
            timeout=self.timeout, check=False, env=env,
        )  # fmt: skip
        if result.returncode != expect:
            output = (result.stderr + result.stdout).strip()[-3000:]
            raise DemoFailed(
                self._step, f"`compact {' '.join(args[:2])}` exited {result.returncode}:\n{output}"
            )
        if echo:  # what the command printed (some print their tables on stderr)
            shown_text = result.stdout.strip() or result.stderr.strip()
            if shown_text:
                self.console.print(shown_text, highlight=False, markup=False)
        return result

    def json(
        self, state: str | None, *args: str, show: bool = True, user: str | None = None
    ) -> Any:
        result = self.compact(state, *args, "--json", show=show, user=user)
        try:
            return json.loads(result.stdout)
        except json.JSONDecodeError:
            raise DemoFailed(self._step, f"`compact {args[0]}` printed no JSON") from None

    def _short(self, arg: str) -> str:
        """Paths under the demo folder, shown relative to it."""
        root = str(self.root) + os.sep
        return arg.replace(root, "") if arg.startswith(root) else arg

    def wait(
        self,
        what: str,
        check: Callable[[], bool | tuple[int, int]],
        timeout: float = 180.0,
    ) -> None:
        """Poll `check` until it holds: True, or (done, total) with `done` reaching `total`
        (shown as a progress bar; a yes/no check as a pulsing one). A node that stops, or
        `timeout` seconds, ends the step."""
        deadline = time.monotonic() + timeout
        columns = (
            SpinnerColumn(),
            TextColumn("waiting for {task.description}"),
            BarColumn(),
            TextColumn("{task.fields[count]}"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=self.console, transient=True) as shown:
            task = shown.add_task(what, total=None, count="")
            while True:
                state = check()
                if isinstance(state, tuple):
                    done, total = state
                    shown.update(task, completed=done, total=total, count=f"{done:,}/{total:,}")
                    if total > 0 and done >= total:
                        return
                elif state:
                    return
                for node in self.nodes.values():
                    if node.proc is not None and node.proc.poll() is not None:
                        tail = node.log_path.read_text(encoding="utf-8", errors="replace")[-2000:]
                        raise DemoFailed(self._step, f"{node.state}'s node stopped:\n{tail}")
                if time.monotonic() > deadline:
                    raise DemoFailed(
                        self._step, f"timed out after {timeout:.0f} s waiting for {what}"
                    )
                time.sleep(0.5)

    # --- the steps ----------------------------------------------------------------------------

    def run(self) -> Findings:
        self.root.mkdir(parents=True, exist_ok=True)
        if any(self.root.iterdir()):
            raise DemoFailed("start", f"{self.root} is not empty: give a new or empty folder")
        self.make_nodes()
        self.form_compact()
        self.ingest()
        self.serve_and_sync()
        self.analyse()
        self.bundle()
        self.matter()
        self.audit()
        return self.found

    def make_nodes(self) -> None:
        self._section("Three state nodes: keys, TLS certificate, database, admin credential")
        (self.root / "keys").mkdir(mode=0o700)
        (self.root / "logs").mkdir()
        for state in STATES:
            node = DemoNode(
                state, self.root / state.lower(), self.root / "keys" / f"{state.lower()}.key",
                self.ports.reserve(),
            )  # fmt: skip
            self.nodes[state] = node
            self.compact(
                None, "init", "--state", state, "--data-dir", str(node.data_dir),
                "--key-file", str(node.key_file), "--listen", "127.0.0.1:0",
                "--federation-listen", f"127.0.0.1:{node.federation_port}",
            )  # fmt: skip
            set_setting(node.data_dir / "compact.toml", "sync_interval_seconds", self.sync_seconds)
            set_setting(node.data_dir / "compact.toml", "metrics_listen", '"127.0.0.1:0"')
        self._say(f"three nodes in {self.root}; each key file is in {self.root / 'keys'}")
        (self.root / "tokens").mkdir(mode=0o700)
        for (state, user), role in USERS.items():
            self.compact(state, "users", "add", user, "--role", role,
                         "--token-file", str(self.token_file(state, user)))  # fmt: skip
        self._say(f"users and their tokens (the admin's is in each node's folder): "
                  f"{self.root / 'tokens'}")  # fmt: skip

    def form_compact(self) -> None:
        self._section("Forming the compact: roster, OPRF key ceremony, signatures, pin")
        cards: list[str] = []
        for state in STATES:
            card = self.root / "ceremony" / f"card-{state}.json"
            card.parent.mkdir(exist_ok=True)
            self.compact(state, "roster", "card", "--out", str(card))
            cards += ["--card", str(card)]
        first = STATES[0]
        proposal = self.root / "ceremony" / "proposal.json"
        self.compact(
            first, "roster", "propose", *cards, "--threshold", str(THRESHOLD),
            "--expires", "2031-01-01", "--out", str(proposal),
        )  # fmt: skip
        shares = self.root / "ceremony" / "oprf"
        self.compact(first, "oprf", "ceremony", str(proposal), "--threshold", str(THRESHOLD),
                     "--out-dir", str(shares))  # fmt: skip
        signed = shares / "proposal.json"
        for state in STATES[1:THRESHOLD]:
            self.compact(state, "roster", "sign", str(signed))
        envelope = json.loads(signed.read_text(encoding="utf-8"))["envelope"]
        self.found.pin = hashlib.sha256(base64.b64decode(envelope["payload"])).hexdigest()
        self._say(
            f"the founders' pin (SHA-256 of roster version 1, published out of band): "
            f"[bold]{self.found.pin}[/bold]"
        )
        for state in STATES:
            self.compact(state, "roster", "apply", str(signed), "--pin", self.found.pin)
            self.compact(state, "oprf", "import-share", str(shares / f"share-{state}.sealed"))
        self.compact("IL", "roster", "show", echo=True)

    def ingest(self) -> None:
        self._section("Incidents with planted cross-state patterns, imported by each state")
        from bench.planted import generate

        planted = generate(SEED, STATES)
        self.found.travellers_planted = sum(
            1 for a in planted.truth["agents"] if a["kind"] == "traveller"
        )
        folder = self.root / "imports"
        # One IL incident of a travelling agent seen in MN as well gets evidence files.
        traveller = next(
            a for a in planted.truth["agents"]
            if a["kind"] == "traveller" and {"IL", "MN"} <= set(a["states"])
        )  # fmt: skip
        il_id = next(i for s, i in traveller["incidents"] if s == "IL")
        record = next(r for r in planted.records["IL"] if r["external_id"] == il_id)
        media = folder / "media"
        media.mkdir(parents=True)
        (media / "stop-photo.png").write_bytes(_png(96, 64, SEED))
        (media / "witness-statement.txt").write_text(
            "Statement of a witness to the stop (synthetic, for the demo).\n", encoding="utf-8"
        )
        record["evidence"] = [
            {"path": "media/stop-photo.png", "media_type": "image/png", "captured_by": "witness"},
            {"path": "media/witness-statement.txt", "media_type": "text/plain"},
        ]
        for state in STATES:
            path = folder / f"{state}.jsonl"
            path.write_bytes(planted.jsonl(state))
            self.compact(state, "ingest", str(path), echo=True)
            self.found.incidents[state] = len(planted.records[state])
        counts = ", ".join(f"{s} {n}" for s, n in self.found.incidents.items())
        self._say(f"imported {counts} incidents (seed {SEED}; the planted truth is known)")
        self._evidence = (
            [f"badge:{traveller['badge_key']}", f"name_agency:{traveller['name_agency_key']}"],
            il_id,
        )

    def serve_and_sync(self) -> None:
        self._section("Serving, syncing and witnessing each other's logs")
        for node in self.nodes.values():
            self._start(node)
        self._say(", ".join(f"{n.state} serves at {n.endpoint}" for n in self.nodes.values()))
        for state in STATES:
            self.compact(state, "sync")
        self.wait(
            "the nodes to replicate and witness each other",
            self._synced,
        )
        self.compact("IL", "peers", echo=True)

    def _start(self, node: DemoNode) -> None:
        info = node.data_dir / "run" / "server.json"
        info.unlink(missing_ok=True)
        self.console.print(
            f"[dim]$ compact serve --data-dir {node.state.lower()} &[/dim]", highlight=False
        )
        log = node.log_path.open("wb")
        self.ports.release(node.federation_port)  # held since init: the node binds it now
        try:
            node.proc = subprocess.Popen(
                [sys.executable, "-m", "node.cli", "serve", "--data-dir", str(node.data_dir)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.root,
                start_new_session=True,  # --keep: Ctrl-C in this terminal leaves it running
            )  # fmt: skip
        finally:
            log.close()
        self.wait(f"{node.state}'s server", info.exists, timeout=60)
        served = json.loads(info.read_text(encoding="utf-8"))
        node.endpoint = f"{served['host']}:{served['port']}"

    def _synced(self) -> tuple[int, int]:
        """(done, total): every peer's log entries each node replicated (up to the peer's
        size now) plus the peers each node witnessed; done when every node holds every
        other's whole log and has witnessed it."""
        sizes = {s: int(self.json(s, "log", "status", show=False)["size"]) for s in STATES}
        done = total = 0
        for state in STATES:
            peers = {p["state"]: p for p in self.json(state, "peers", show=False)["peers"]}
            for peer in STATES:
                if peer == state:
                    continue
                p = peers.get(peer)
                total += sizes[peer] + 1
                if p is not None:
                    done += min(int(p["replicated"]), sizes[peer]) + (1 if p["witnessed_by"] else 0)
        return done, total

    def analyse(self) -> None:
        self._section("What the compact shows: cross-state agents, teams, surges, hits")
        matches = self.json(
            "IL", "agents", "matches", "--min-strength", "strong", user="analyst.ruiz"
        )["matches"]
        self.found.matches = len(matches)
        if not matches:
            raise DemoFailed(self._step, "no agent was matched across states")
        for n, match in enumerate(matches[:_SHOWN], 1):
            seen = " · ".join(f"{s} {k}" for s, k in sorted(match["incidents_per_state"].items()))
            conduct = sorted(match["conduct"].items(), key=lambda c: (-c[1], c[0]))[:3]
            self._say(
                f"  {n}. {match['entity']} {match['id'][:12]}  {seen}  "
                f"{match['first_day']} … {match['last_day']}  "
                + ", ".join(f"{c} {k}" for c, k in conduct)
            )
        self._say(
            f"  {len(matches)} agents matched by badge or name and agency "
            f"(the seed planted {self.found.travellers_planted} travelling agents and two "
            "teams); ids are pseudonyms"
        )
        units = self.json("IL", "patterns", "units", user="analyst.ruiz")["rows"]
        for team in [u for u in units if u["states"] >= 2][:_SHOWN]:
            self._say(f"  team {team['team']}: {team['agents']} agents, {team['incidents']} "
                      f"incidents, {team['movement']}")  # fmt: skip
        for row in self.json("IL", "patterns", "surges", user="analyst.ruiz")["rows"][:_SHOWN]:
            self._say(
                f"  surge: {row['state']} {row['county']}, week of {row['week']}: "
                f"{row['count']} incidents against a baseline of {row['baseline']:g} "
                f"(p = {row['p_value']:.2g})"
            )
        hits = self.json("IL", "hits", "--min-strength", "strong", user="analyst.ruiz")["hits"]
        self.found.hits = len(hits)
        self._say(
            f"  {len(hits)} strong hits for IL: its incidents linked to another state's "
            "(`compact hits` lists them)"
        )

    def bundle(self) -> None:
        self._section("An evidence bundle: MN asks, IL's reviewer approves, MN verifies")
        keys, external_id = self._evidence
        gid = ""
        for key in keys:
            found = self.json("IL", "incidents", "search", "--key", key)
            gid = next((str(r["global_id"]) for r in found if r["external_id"] == external_id), "")
            if gid:
                break
        if not gid:
            raise DemoFailed(self._step, f"IL's incident {external_id} is not found by its keys")
        self.found.evidence_incident = gid
        request = self.json(
            "MN", "bundle", "request", "--state", "IL", "--incident", gid, "--purpose", PURPOSE,
            user="analyst.ortiz",
        )  # fmt: skip
        request_id = str(request["request_id"])
        self.found.request_id = request_id

        def arrived() -> bool:
            rows = self.json("IL", "bundle", "list", "--incoming", show=False)
            return any(r["request_id"] == request_id for r in rows)

        self.wait("the request to reach IL", arrived)
        self.compact("IL", "bundle", "list", "--incoming", echo=True, user="reviewer.king")
        refused = self.compact("IL", "bundle", "approve", request_id, user="analyst.ruiz",
                               expect=77)  # fmt: skip
        self._say("  " + refused.stderr.strip().removeprefix("error: "))
        self.compact("IL", "bundle", "approve", request_id, user="reviewer.king")

        def delivered() -> bool:
            # MN's own loop may receive the bundle before `refresh` does (refresh then
            # reports nothing): the request's state is what counts.
            self.compact("MN", "bundle", "refresh", show=False)
            rows = self.json("MN", "bundle", "list", "--outgoing", show=False)
            state = next((r["state"] for r in rows if r["request_id"] == request_id), None)
            if state in ("denied", "failed"):
                raise DemoFailed(self._step, f"the bundle request ended {state}")
            return state == "delivered"

        self.wait("MN to receive and verify the bundle", delivered)
        self.compact("MN", "bundle", "show", request_id, echo=True)

    def matter(self) -> None:
        self._section("A matter, a court-ready exhibit package, verified offline")
        self.compact("MN", "matter", "create", MATTER_TITLE, "--states", "IL,CA",
                     "--bates-prefix", "MN-IL", user="atty.chen")  # fmt: skip
        self.compact("MN", "matter", "add-exhibit", MATTER_ID, "--incident",
                     self.found.evidence_incident, "--description",
                     "Photograph and witness statement of the stop (received from IL)",
                     user="atty.chen")  # fmt: skip
        out = self.root / "exhibits" / "doe-v-noem"
        out.parent.mkdir()
        report = self.json("MN", "exhibit", "export", MATTER_ID, str(out), "--zip", "--wait",
                           "240", user="atty.chen")  # fmt: skip
        self.found.package = out
        self.found.exhibits = int(report["exhibits"])
        self.compact(None, "verify", str(out), "--roster-pin", self.found.pin, echo=True)
        self.compact(None, "verify", str(out) + ".zip", "--roster-pin", self.found.pin)

    def audit(self) -> None:
        self._section("The audit trail: every use, chained into the witnessed log")
        self.compact("IL", "audit", "--action", "bundle.", echo=True, user="reviewer.king")

        def verify() -> Any:
            return self.json("IL", "audit", "verify", show=False, user="reviewer.king")

        # Each look is itself an audit event: wait for the events there were at the start.
        start = verify()
        wanted = int(start["events"]) - int(start["not_logged_by_design"])

        def witnessed() -> bool:
            return int(verify()["witnessed_events"]) >= wanted

        self.wait("IL's audit events to be logged and witnessed", witnessed)
        report = self.json("IL", "audit", "verify", user="reviewer.king")
        self.found.audited = int(report["logged"])
        self._say(
            f"  {report['logged']} audit events in IL's log, {report['witnessed_events']} of them "
            f"under a checkpoint cosigned by {', '.join(report['witnesses'])}; none edited"
        )

    # --- the end -----------------------------------------------------------------------------

    def summary(self, *, kept: bool) -> None:
        f = self.found
        self.console.rule("[bold]Done", align="left")
        lines = [
            f"folder        {self.root}",
            *(f"node {s}       {n.data_dir}  (serve log: {n.log_path})"
              for s, n in self.nodes.items()),
            f"roster pin    {f.pin}",
            "incidents     " + ", ".join(f"{s} {n}" for s, n in f.incidents.items()),
            f"agents        {f.matches} matched across states (IL's replica)",
            f"hits for IL   {f.hits}",
            f"bundle        {f.request_id} (MN from IL), delivered and verified",
            f"package       {f.package} and {f.package}.zip ({f.exhibits} exhibit)",
            f"audit trail   IL: {f.audited} events in its log, cosigned by its peers",
            f"user tokens   {self.root / 'tokens'}",
        ]  # fmt: skip
        for line in lines:
            self._say(line)
        if kept:
            self._say("\nThe three nodes are still running. Try, for example:")
            d = self.nodes["IL"].data_dir
            tokens = self.root / "tokens"
            for example in (
                f"COMPACT_TOKEN_FILE={tokens / 'il-analyst.ruiz.token'} "
                f"compact agents matches --data-dir {d}",
                f"compact patterns repeat --data-dir {d}",
                f"compact incidents search --data-dir {d} --conduct masked_agent",
                f"compact verify {f.package} --roster-pin {f.pin}",
                f"compact health --data-dir {d}",
                *self._metrics_urls(),
            ):
                self._say(f"  {example}")
            pids = " ".join(str(n.proc.pid) for n in self.nodes.values() if n.proc)
            self._say(f"Stop them with: kill {pids}")
        else:
            self._say(f"\nThe nodes are stopped; remove the folder with: rm -rf {self.root}")

    def _metrics_urls(self) -> list[str]:
        """`curl` lines for each running node's Prometheus endpoint (run/metrics.json)."""
        out = []
        for state, node in self.nodes.items():
            try:
                info = json.loads((node.data_dir / "run" / "metrics.json").read_text("utf-8"))
            except (OSError, ValueError):
                continue
            out.append(f"curl -s http://127.0.0.1:{int(info['port'])}/metrics   # {state}")
        return out

    def stop(self) -> list[str]:
        """Stop every node (SIGTERM, then SIGKILL after 30 s); the states that did not stop
        cleanly."""
        self.ports.release_all()
        unclean = []
        for node in self.nodes.values():
            if node.proc is None:
                continue
            if node.proc.poll() is None:
                node.proc.send_signal(signal.SIGTERM)
            try:
                code = node.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                node.proc.kill()
                code = node.proc.wait()
            if code != 0:
                unclean.append(node.state)
            node.proc = None
        return unclean


def run_demo(root: Path, *, keep: bool, console: Console) -> int:
    """The demo in `root`; the exit status (0 when every step did what it should)."""
    demo = Demo(root, console=console)
    ok = False
    try:
        demo.run()
        ok = True
    except DemoFailed as e:
        console.print(f"[red bold]demo failed at {e.step}[/red bold]: {e.message}", highlight=False)
    except KeyboardInterrupt:
        console.print("[red]interrupted[/red]")
    finally:
        demo.ports.release_all()
        if not (ok and keep):
            unclean = demo.stop()
            if unclean and ok:
                console.print(f"[red]{', '.join(unclean)} did not stop cleanly[/red]")
                ok = False
    if ok:
        demo.summary(kept=keep)
    return 0 if ok else 1
