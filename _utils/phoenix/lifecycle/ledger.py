"""The master's durable record of lifecycle actions (sqlite).

Every lifecycle action the queue consumer accepts is written here *before* its SQS message is deleted, so
a master restart loses nothing: the ledger is what the engine resumes from, what heartbeats are sent for,
and (with AWS) the only thing the reactor, the orchestration and key acceptance trust. Event data is never
trusted: any minion can forge any tag.

States of an action::

    in_flight   accepted, AWS holds the instance (Pending:Wait / Terminating:Wait), heartbeats run
    completing  a CONTINUE/ABANDON was claimed (exactly one caller wins) and is being sent
    continued   AWS accepted CONTINUE
    abandoned   AWS accepted ABANDON
    expired     the global timeout passed: AWS applied the hook's DefaultResult, heartbeats stopped
    gone        AWS answered "No active Lifecycle Action found" (final, never retried)

Besides actions the ledger keeps which instance ids had a key accepted (each id once, ever), which identity
documents were used (each once, ever) and a journal of notes (refusals, failures) per instance.

The file is written with ``synchronous=FULL`` in WAL mode: a commit returned means the row is on disk.
Every call opens its own connection, so threads and processes (engine, runners) can share one file.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

LAUNCHING = "autoscaling:EC2_INSTANCE_LAUNCHING"
TERMINATING = "autoscaling:EC2_INSTANCE_TERMINATING"

IN_FLIGHT = "in_flight"
COMPLETING = "completing"
CONTINUED = "continued"
ABANDONED = "abandoned"
EXPIRED = "expired"
GONE = "gone"
OPEN_STATES = (IN_FLIGHT, COMPLETING)
FINAL_STATES = (CONTINUED, ABANDONED, EXPIRED, GONE)
STATES = OPEN_STATES + FINAL_STATES

SCHEMA = """
CREATE TABLE IF NOT EXISTS actions (
    token             TEXT PRIMARY KEY,
    instance_id       TEXT NOT NULL,
    grp               TEXT NOT NULL,
    hook              TEXT NOT NULL,
    transition        TEXT NOT NULL,
    state             TEXT NOT NULL,
    received_at       REAL NOT NULL,
    notified_at       REAL,
    heartbeat_timeout INTEGER NOT NULL,
    global_deadline   REAL NOT NULL,
    last_heartbeat    REAL NOT NULL,
    heartbeats        INTEGER NOT NULL DEFAULT 0,
    result            TEXT,
    completed_at      REAL,
    reason            TEXT,
    claimed_by        TEXT,
    claimed_at        REAL,
    triggered_at      REAL,
    metadata          TEXT
);
CREATE INDEX IF NOT EXISTS actions_instance ON actions (instance_id, transition, state);
CREATE TABLE IF NOT EXISTS keys (
    instance_id  TEXT PRIMARY KEY,
    accepted_at  REAL NOT NULL,
    fingerprint  TEXT NOT NULL,
    token        TEXT
);
CREATE TABLE IF NOT EXISTS documents (
    digest       TEXT PRIMARY KEY,
    instance_id  TEXT NOT NULL,
    used_at      REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS notes (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    at           REAL NOT NULL,
    instance_id  TEXT NOT NULL,
    token        TEXT,
    kind         TEXT NOT NULL,
    detail       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS notes_instance ON notes (instance_id);
"""


class LedgerError(Exception):
    """The ledger file cannot be opened or written (path, permissions, corruption)."""


@dataclass(frozen=True)
class Action:
    """One lifecycle action as the ledger knows it."""

    token: str
    instance_id: str
    group: str
    hook: str
    transition: str
    state: str
    received_at: float
    heartbeat_timeout: int
    global_deadline: float
    reason: str | None = None
    notified_at: float | None = None
    last_heartbeat: float = 0.0
    heartbeats: int = 0
    result: str | None = None
    completed_at: float | None = None
    claimed_by: str | None = None
    claimed_at: float | None = None
    triggered_at: float | None = None
    metadata: str | None = None

    @property
    def launching(self) -> bool:
        return self.transition == LAUNCHING

    @property
    def kind(self) -> str:
        """``launching`` or ``terminating`` (the event tag's word)."""
        return "launching" if self.launching else "terminating"

    def heartbeat_due(self) -> float:
        """When the next heartbeat is due: a third of the heartbeat timeout after the last one."""
        return self.last_heartbeat + self.heartbeat_timeout / 3.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_COLUMNS = ("token", "instance_id", "grp", "hook", "transition", "state", "received_at", "heartbeat_timeout",
            "global_deadline", "reason", "notified_at", "last_heartbeat", "heartbeats", "result", "completed_at",
            "claimed_by", "claimed_at", "triggered_at", "metadata")


def _action(row: sqlite3.Row | tuple[Any, ...]) -> Action:
    values = dict(zip(_COLUMNS, row))
    values["group"] = values.pop("grp")
    return Action(**values)


@dataclass
class Ledger:
    """The ledger file at ``path`` (created with its directory, mode 0600)."""

    path: str | os.PathLike[str]
    timeout: float = 30.0
    _ready: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        self.path = str(self.path)
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as db:
                db.executescript(SCHEMA)
            os.chmod(self.path, 0o600)
        except (OSError, sqlite3.Error) as exc:
            raise LedgerError(f"cannot open the lifecycle ledger {self.path}: {exc}. Check "
                              "phoenix:lifecycle:ledger and the directory's permissions") from None

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            yield db
        finally:
            db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE: writers queue up, readers go on)."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _select(self, where: str = "1", params: tuple[Any, ...] = (), order: str = "received_at") -> list[Action]:
        cols = ", ".join(_COLUMNS)
        with self._connect() as db:
            rows = db.execute(f"SELECT {cols} FROM actions WHERE {where} ORDER BY {order}", params).fetchall()
        return [_action(r) for r in rows]

    # -- actions ---------------------------------------------------------------------------------
    def record(self, token: str, instance_id: str, group: str, hook: str, transition: str, *,
               heartbeat_timeout: int, global_deadline: float, notified_at: float | None = None,
               received_at: float | None = None, metadata: str | None = None) -> bool:
        """Write a new in-flight action; ``False`` when ``token`` is already known (a duplicate delivery).

        The first heartbeat is due a third of ``heartbeat_timeout`` after the notification was sent.
        """
        now = time.time() if received_at is None else received_at
        start = notified_at if notified_at is not None and notified_at <= now else now
        with self._tx() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO actions (token, instance_id, grp, hook, transition, state, received_at, "
                "notified_at, heartbeat_timeout, global_deadline, last_heartbeat, metadata) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (token, instance_id, group, hook, transition, IN_FLIGHT, now, notified_at, int(heartbeat_timeout),
                 float(global_deadline), start, metadata))
            return cur.rowcount == 1

    def get(self, token: str) -> Action | None:
        """The action with ``token``, or ``None``."""
        found = self._select("token = ?", (token,))
        return found[0] if found else None

    def in_flight(self, instance_id: str, transition: str = LAUNCHING) -> Action | None:
        """The instance's in-flight action for ``transition`` (AWS still waits for our answer), or ``None``."""
        found = self._select("instance_id = ? AND transition = ? AND state = ?", (instance_id, transition, IN_FLIGHT))
        return found[-1] if found else None

    def latest(self, instance_id: str, transition: str | None = None) -> Action | None:
        """The instance's most recent action (any state), optionally for one transition."""
        if transition:
            found = self._select("instance_id = ? AND transition = ?", (instance_id, transition))
        else:
            found = self._select("instance_id = ?", (instance_id,))
        return found[-1] if found else None

    def actions(self, state: str | None = None, instance_id: str | None = None) -> list[Action]:
        """Actions, oldest first, optionally filtered by state and/or instance."""
        where, params = [], []
        if state:
            where.append("state = ?")
            params.append(state)
        if instance_id:
            where.append("instance_id = ?")
            params.append(instance_id)
        return self._select(" AND ".join(where) or "1", tuple(params))

    def open_actions(self) -> list[Action]:
        """Actions still waiting for AWS (in flight or completing), oldest first."""
        return self._select("state IN (?, ?)", OPEN_STATES)

    def heartbeat_sent(self, token: str, at: float | None = None) -> None:
        """A RecordLifecycleActionHeartbeat for ``token`` succeeded at ``at``."""
        with self._tx() as db:
            db.execute("UPDATE actions SET last_heartbeat = ?, heartbeats = heartbeats + 1 WHERE token = ?",
                       (time.time() if at is None else at, token))

    def claim(self, token: str, owner: str) -> bool:
        """Make ``owner`` the one orchestration working on an in-flight action; ``False`` if another has it.

        Claims are cleared when the engine starts (orchestrations die with the master) and when the action
        completes, so a forged or repeated event cannot start a second provisioning of the same instance.
        """
        with self._tx() as db:
            cur = db.execute("UPDATE actions SET claimed_by = ?, claimed_at = ? WHERE token = ? AND state = ? "
                             "AND (claimed_by IS NULL OR claimed_by = ?)", (owner, time.time(), token, IN_FLIGHT, owner))
            return cur.rowcount == 1

    def triggered(self, token: str, at: float) -> None:
        """The trigger event for ``token`` was fired at ``at`` (the engine re-fires unclaimed ones)."""
        with self._tx() as db:
            db.execute("UPDATE actions SET triggered_at = ? WHERE token = ?", (at, token))

    def release_claims(self) -> int:
        """Forget every claim (the engine's start: nothing from before the restart is still running)."""
        with self._tx() as db:
            return db.execute("UPDATE actions SET claimed_by = NULL, claimed_at = NULL "
                              "WHERE claimed_by IS NOT NULL").rowcount

    def note_reason(self, token: str, reason: str) -> None:
        """Keep why a step failed (the ABANDON that follows reports it)."""
        with self._tx() as db:
            db.execute("UPDATE actions SET reason = ? WHERE token = ?", (reason, token))

    def begin_completion(self, token: str, result: str, reason: str | None = None) -> bool:
        """Claim the right to send ``result`` (CONTINUE/ABANDON); exactly one caller ever gets ``True``."""
        with self._tx() as db:
            # completed_at holds when the completion began until the final state replaces it
            cur = db.execute("UPDATE actions SET state = ?, result = ?, reason = COALESCE(?, reason), "
                             "completed_at = ? WHERE token = ? AND state = ?",
                             (COMPLETING, result, reason, time.time(), token, IN_FLIGHT))
            return cur.rowcount == 1

    def finish(self, token: str, state: str, reason: str | None = None,
               from_states: tuple[str, ...] = OPEN_STATES) -> bool:
        """Move an open action to a final state (continued, abandoned, expired, gone).

        Only from ``from_states``: a final state is never overwritten (a heartbeat that raced a completion
        must not turn ``abandoned`` into ``gone``). ``False`` when the action was not in one of them.
        """
        if state not in FINAL_STATES:
            raise ValueError(f"not a final ledger state: {state!r} (one of {', '.join(FINAL_STATES)})")
        marks = ", ".join("?" for _ in from_states)
        with self._tx() as db:
            cur = db.execute("UPDATE actions SET state = ?, completed_at = ?, reason = COALESCE(?, reason), "
                             f"claimed_by = NULL WHERE token = ? AND state IN ({marks})",
                             (state, time.time(), reason, token, *from_states))
            return cur.rowcount == 1

    # -- keys and identity documents -------------------------------------------------------------
    def key_accepted_before(self, instance_id: str) -> bool:
        """Whether Phoenix ever accepted a key for ``instance_id``."""
        with self._connect() as db:
            return db.execute("SELECT 1 FROM keys WHERE instance_id = ?", (instance_id,)).fetchone() is not None

    def document_used(self, digest: str) -> bool:
        """Whether an identity document (by SHA-256) was already used to accept a key."""
        with self._connect() as db:
            return db.execute("SELECT 1 FROM documents WHERE digest = ?", (digest,)).fetchone() is not None

    def record_key(self, instance_id: str, fingerprint: str, digest: str, token: str | None) -> bool:
        """Record that a key is being accepted for ``instance_id`` with the document ``digest``.

        Both are unique for ever: ``False`` (and nothing written) when the id already had a key or the
        document was already used, even by a concurrent caller.
        """
        now = time.time()
        try:
            with self._tx() as db:
                db.execute("INSERT INTO keys (instance_id, accepted_at, fingerprint, token) VALUES (?, ?, ?, ?)",
                           (instance_id, now, fingerprint, token))
                db.execute("INSERT INTO documents (digest, instance_id, used_at) VALUES (?, ?, ?)",
                           (digest, instance_id, now))
        except sqlite3.IntegrityError:
            return False
        return True

    # -- journal ---------------------------------------------------------------------------------
    def note(self, instance_id: str, kind: str, detail: str | dict[str, Any], token: str | None = None) -> None:
        """Add a journal line for an instance (``kind``: key_refused, ignored, failed, ...)."""
        text = detail if isinstance(detail, str) else json.dumps(detail, sort_keys=True)
        with self._tx() as db:
            db.execute("INSERT INTO notes (at, instance_id, token, kind, detail) VALUES (?, ?, ?, ?, ?)",
                       (time.time(), instance_id, token, kind, text))

    def notes(self, instance_id: str | None = None, kind: str | None = None) -> list[dict[str, Any]]:
        """Journal lines, oldest first."""
        where, params = [], []
        if instance_id:
            where.append("instance_id = ?")
            params.append(instance_id)
        if kind:
            where.append("kind = ?")
            params.append(kind)
        sql = "SELECT at, instance_id, token, kind, detail FROM notes WHERE " + (" AND ".join(where) or "1")
        with self._connect() as db:
            rows = db.execute(sql + " ORDER BY id", tuple(params)).fetchall()
        return [dict(zip(("at", "instance_id", "token", "kind", "detail"), r)) for r in rows]


__all__ = ["Ledger", "Action", "LedgerError", "LAUNCHING", "TERMINATING", "IN_FLIGHT", "COMPLETING", "CONTINUED",
           "ABANDONED", "EXPIRED", "GONE", "OPEN_STATES", "FINAL_STATES", "STATES"]
