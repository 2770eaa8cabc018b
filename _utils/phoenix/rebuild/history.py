"""The last cycles' real durations, kept on the group itself as one tag.

Why a group tag: it lives with the group in AWS, so it survives the master being rebuilt (no state file to
back up), every master or ops minion that manages the group reads the same record, and a stack update does
not touch it (CloudFormation changes only the tags its template declares). It costs no extra call: the
group is described anyway. Its limit is AWS's 256 characters per tag value: :data:`KEEP` entries of
``<end epoch>:<seconds>:<batches>:<instances>:<outcome>`` fit with room to spare.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

HISTORY_TAG = "phoenix:rebuild:history"
KEEP = 6
OUTCOMES = ("ok", "failed", "cancelled", "deadline")
#: a recorded per-batch time is scaled by this before it is used as the expectation (slower days happen)
SAFETY = 1.25
#: with no record: the hook's timeout plus this for the launch itself (boot before Pending:Wait)
LAUNCH_ALLOWANCE = 120.0


@dataclass(frozen=True)
class Entry:
    end: int
    seconds: int
    batches: int
    instances: int
    outcome: str

    @property
    def per_batch(self) -> float:
        return self.seconds / max(1, self.batches)

    def text(self) -> str:
        return f"{self.end}:{self.seconds}:{self.batches}:{self.instances}:{self.outcome}"

    def as_dict(self) -> dict[str, Any]:
        return {"end": self.end, "seconds": self.seconds, "batches": self.batches, "instances": self.instances,
                "outcome": self.outcome, "per_batch_seconds": round(self.per_batch, 1)}


def parse(value: str | None) -> list[Entry]:
    """Entries of a history tag value, oldest first; unreadable entries are skipped."""
    out = []
    for part in (value or "").split():
        bits = part.split(":")
        if len(bits) != 5 or bits[4] not in OUTCOMES:
            continue
        try:
            out.append(Entry(int(bits[0]), int(bits[1]), int(bits[2]), int(bits[3]), bits[4]))
        except ValueError:
            continue
    return out


def from_tags(tags: Iterable[dict[str, Any]]) -> list[Entry]:
    for tag in tags:
        if tag.get("Key") == HISTORY_TAG:
            return parse(tag.get("Value"))
    return []


def add(entries: list[Entry], entry: Entry) -> str:
    """The tag value with ``entry`` appended, keeping the last :data:`KEEP`."""
    kept = [*entries, entry][-KEEP:]
    text = " ".join(e.text() for e in kept)
    while len(text) > 256 and len(kept) > 1:
        kept = kept[1:]
        text = " ".join(e.text() for e in kept)
    return text


def per_batch(entries: list[Entry], prior: float) -> tuple[float, str]:
    """Expected seconds per batch and where that figure comes from.

    The slowest recorded successful batch (of the last :data:`KEEP` cycles) times :data:`SAFETY`, but never
    less than ``prior`` scaled down to a third (a record of lucky fast cycles does not make the estimate
    collapse); with no successful record, ``prior``.
    """
    ok = [e for e in entries if e.outcome == "ok" and e.batches > 0]
    if not ok:
        return prior, "no recorded cycle yet: the LAUNCHING hook's timeout plus pause and launch time per batch"
    slowest = max(e.per_batch for e in ok)
    value = max(slowest * SAFETY, prior / 3)
    return value, (f"slowest of the last {len(ok)} recorded cycle(s): {slowest:.0f}s per batch, x{SAFETY}"
                   + (" (floored at a third of the hook-timeout estimate)" if value > slowest * SAFETY else ""))
