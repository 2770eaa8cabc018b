"""Reading what a minion returned for ``state.highstate``: did it pass, and if not, the first failure."""

from __future__ import annotations

from typing import Any


def first_failure(ret: Any) -> str | None:
    """``None`` when every state succeeded; else one sentence naming the first failed state (run order).

    A list or string return is a render/compile error; an empty return means the minion did not answer.
    """
    if ret is None or ret == {} or ret == []:
        return "the minion returned nothing for the highstate (it did not answer in time)"
    if isinstance(ret, str):
        return f"highstate failed: {ret.strip()[:500]}"
    if isinstance(ret, list):
        return "highstate did not compile: " + "; ".join(str(x).strip() for x in ret)[:500]
    if not isinstance(ret, dict):
        return f"unexpected highstate return of type {type(ret).__name__}"
    failed = [(v.get("__run_num__", 0), k, v) for k, v in ret.items() if isinstance(v, dict) and v.get("result") is False]
    if not failed:
        if not any(isinstance(v, dict) for v in ret.values()):
            return "the highstate applied no state (no top file matched this minion?)"
        return None
    failed.sort(key=lambda item: item[0])
    _, key, value = failed[0]
    parts = key.split("_|-")  # module _|- id _|- name _|- function
    label = f"{parts[1]} ({parts[0]}.{parts[3]})" if len(parts) == 4 else key
    comment = str(value.get("comment", "")).strip().splitlines()
    return f"state {label} failed: {(comment[0] if comment else 'no comment')[:300]}"


def duration(ret: Any) -> float:
    """Seconds the states took on the minion (sum of their ``duration``, in ms)."""
    if not isinstance(ret, dict):
        return 0.0
    return sum(float(v.get("duration", 0) or 0) for v in ret.values() if isinstance(v, dict)) / 1000.0


__all__ = ["first_failure", "duration"]
