"""phoenix.lifecycle.sequence: the order of a lifecycle action's steps and what a failure does (pure
logic; the real runners run it in tests/integration/test_lifecycle_daemons.py and test_provision_e2e.py)."""

from __future__ import annotations

from typing import Any

import pytest

from phoenix.lifecycle import sequence

IID = "i-0123456789abcdef0"


class Steps:
    """Stand-in runner functions: record each call; ``fail`` names steps that fail, ``boom`` ones that raise."""

    def __init__(self, fail: set[str] = frozenset(), boom: set[str] = frozenset(), odd: set[str] = frozenset()):
        self.fail, self.boom, self.odd = fail, boom, odd
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, name: str, **kwargs: Any) -> Any:
        self.calls.append((name, kwargs))
        if name in self.boom:
            raise RuntimeError("connection reset")
        if name in self.odd:
            return "not a dict"
        label = kwargs.get("result") if name == "lifecycle.complete" else name
        return {"result": name not in self.fail, "step": name.split(".")[1], "comment": f"{label} ran"}

    def names(self) -> list[str]:
        return [n if n != "lifecycle.complete" else f"complete {kw['result']}" for n, kw in self.calls]


def test_launching_runs_every_step_in_order_then_continue_then_after():
    steps = Steps()
    out = sequence.launching(steps, IID, "orch-1")
    assert steps.names() == ["lifecycle.claim", *sequence.LAUNCH_BEFORE, "complete CONTINUE", *sequence.LAUNCH_AFTER]
    assert out["result"] is True and out["outcome"] == "CONTINUE"
    assert all(kw["owner"] == "orch-1" and kw["instance_id"] == IID for _, kw in steps.calls)
    assert steps.calls[0][1]["kind"] == "launching"
    assert out["comment"].startswith("CONTINUE in ") and "health_check" in out["comment"]
    assert len(out["steps"]) == 1 + len(sequence.LAUNCH_BEFORE) + 1 + len(sequence.LAUNCH_AFTER)


def test_a_failed_claim_signals_nothing():
    steps = Steps(fail={"lifecycle.claim"})
    out = sequence.launching(steps, IID, "orch-1")
    assert steps.names() == ["lifecycle.claim"]
    assert out["result"] is False and out["outcome"] == "ignored"


@pytest.mark.parametrize("failing", sequence.LAUNCH_BEFORE)
def test_the_first_failing_step_abandons_at_once_with_its_reason(failing):
    steps = Steps(fail={failing})
    out = sequence.launching(steps, IID, "orch-1")
    upto = sequence.LAUNCH_BEFORE.index(failing) + 1
    assert steps.names() == ["lifecycle.claim", *sequence.LAUNCH_BEFORE[:upto], "complete ABANDON"]
    abandon = steps.calls[-1][1]
    assert abandon["reason"] == f"{failing.split('.')[1]}: {failing} ran" and abandon["owner"] == "orch-1"
    assert out["result"] is False and out["outcome"] == "ABANDON"
    assert f"{failing.split('.')[1]} (failed)" in out["comment"]


def test_a_step_that_raises_or_returns_nonsense_is_a_failure_not_a_pass():
    raised = Steps(boom={"lifecycle.highstate"})
    out = sequence.launching(raised, IID, "orch-1")
    assert raised.names()[-1] == "complete ABANDON"
    assert raised.calls[-1][1]["reason"] == ("lifecycle.highstate: lifecycle.highstate raised RuntimeError: "
                                             "connection reset")
    assert out["outcome"] == "ABANDON"
    odd = Steps(odd={"lifecycle.health_check"})
    out = sequence.launching(odd, IID, "orch-1")
    assert odd.names()[-1] == "complete ABANDON" and "not a step result" in odd.calls[-1][1]["reason"]


def test_after_steps_fail_the_run_but_are_no_abandon_reason():
    steps = Steps(fail={"provision.close_secrets"})
    out = sequence.launching(steps, IID, "orch-1")
    assert "complete ABANDON" not in steps.names()
    assert steps.names()[-2:] == list(sequence.LAUNCH_AFTER), "the inventory still runs"
    assert out["outcome"] == "CONTINUE" and out["result"] is False


def test_no_after_steps_when_continue_was_not_sent():
    steps = Steps(fail={"lifecycle.complete"})
    out = sequence.launching(steps, IID, "orch-1")
    assert steps.names()[-1] == "complete CONTINUE"
    assert out["outcome"] == "CONTINUE not sent" and out["result"] is False


def test_misconfigured_steps_abandon_right_after_the_claim():
    steps = Steps()
    out = sequence.launching(steps, IID, "orch-1", misconfigured="before: nope.step is not a loaded runner function")
    assert steps.names() == ["lifecycle.claim", "complete ABANDON"]
    assert steps.calls[-1][1]["reason"] == "steps: before: nope.step is not a loaded runner function"
    assert out["outcome"] == "ABANDON" and out["result"] is False
    assert sequence.launching(Steps(fail={"lifecycle.claim"}), IID, "o", misconfigured="x")["outcome"] == "ignored"


def test_terminating_cleans_up_continues_even_after_a_failure_and_then_refreshes():
    steps = Steps()
    out = sequence.terminating(steps, IID, "orch-2")
    assert steps.names() == ["lifecycle.claim", *sequence.RETIRE_BEFORE, "complete CONTINUE", *sequence.RETIRE_AFTER]
    assert steps.calls[0][1]["kind"] == "terminating" and steps.calls[-2][1]["kind"] == "terminating"
    assert out["result"] is True
    failed = Steps(fail={"lifecycle.retire"})
    out = sequence.terminating(failed, IID, "orch-2")
    assert failed.names() == ["lifecycle.claim", *sequence.RETIRE_BEFORE, "complete CONTINUE"], \
        "the instance goes anyway; the inventory waits for a clean retire"
    assert out["result"] is False and out["outcome"] == "CONTINUE"
    bad = Steps()
    out = sequence.terminating(bad, IID, "orch-2", misconfigured="before: x.y is not a loaded runner function")
    assert bad.names() == ["lifecycle.claim", "complete CONTINUE"] and out["result"] is False


def test_check_names_refuses_what_is_not_a_loaded_runner_function():
    known = {"lifecycle.highstate", "site.smoke"}.__contains__
    assert sequence.check_names(["lifecycle.highstate", "site.smoke"], known, "before") == ["lifecycle.highstate",
                                                                                           "site.smoke"]
    with pytest.raises(ValueError, match="before: site.smok is not a loaded runner function.*sync_runners"):
        sequence.check_names(["site.smok"], known, "before")
    with pytest.raises(ValueError, match="not a runner function name"):
        sequence.check_names(["rm -rf"], known, "before")
    with pytest.raises(ValueError, match="must be a list"):
        sequence.check_names("lifecycle.highstate", known, "after")
    assert sequence.check_names([], known, "after") == []
