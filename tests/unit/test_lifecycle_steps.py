"""phoenix.lifecycle.steps: what a provisioning step reports, against a real ledger (sqlite in tmp)."""

from __future__ import annotations

import logging
import time

from phoenix.lifecycle import steps
from phoenix.lifecycle.ledger import LAUNCHING, Ledger

IID = "i-0123456789abcdef0"
log = logging.getLogger("test.steps")


def ledger_with_action(tmp_path) -> Ledger:
    ledger = Ledger(str(tmp_path / "ledger.sqlite"))
    assert ledger.record("tok-1", IID, "web", "provision", LAUNCHING, heartbeat_timeout=300,
                         global_deadline=time.time() + 3600)
    return ledger


def test_ownership_needs_the_in_flight_action_and_its_claim(tmp_path):
    ledger = ledger_with_action(tmp_path)
    assert steps.ownership(ledger, IID, LAUNCHING, "orch-a") == (None, "this orchestration does not hold the "
                                                                       "action's claim")
    assert ledger.claim("tok-1", "orch-a")
    action, why_not = steps.ownership(ledger, IID, LAUNCHING, "orch-a")
    assert why_not is None and action.token == "tok-1"
    assert steps.ownership(ledger, IID, LAUNCHING, "orch-b")[0] is None
    assert steps.ownership(ledger, "i-00000000deadbeef0", LAUNCHING, "orch-a") == (
        None, "no in-flight action in the ledger")


def test_a_failure_is_returned_fired_and_written_to_the_ledger(tmp_path, caplog):
    ledger = ledger_with_action(tmp_path)
    fired = []
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="test.steps"):
        ret = steps.failed(lambda tag, data: fired.append((tag, data)) or True, log, IID, "health",
                           "/console answered 200, expected 404", started, ledger, "tok-1", address="127.1.0.1")
    assert ret["result"] is False and ret["step"] == "health" and ret["address"] == "127.1.0.1"
    assert ret["comment"] == "/console answered 200, expected 404" and ret["seconds"] >= 0
    assert fired == [(f"phoenix/lifecycle/step/{IID}", {"instance_id": IID, "step": "health", "result": False,
                                                         "reason": ret["comment"], "seconds": ret["seconds"],
                                                         "address": "127.1.0.1"})]
    assert ledger.latest(IID).reason == "health: /console answered 200, expected 404"
    assert [n["kind"] for n in ledger.notes(IID)][-1] == "failed"
    assert "health of i-0123456789abcdef0 failed" in caplog.text


def test_a_failure_without_the_action_leaves_the_ledger_alone(tmp_path):
    ledger = ledger_with_action(tmp_path)
    ret = steps.failed(None, log, IID, "claim", "not ours")  # no bus (salt-call --local), no action
    assert ret["result"] is False and ret["seconds"] is None
    assert ledger.latest(IID).reason is None


def test_done_reports_success_with_its_extras():
    fired = []
    ret = steps.done(lambda tag, data: fired.append(data) or True, log, IID, "minion", "key accepted",
                     time.monotonic(), key_seconds=1.5)
    assert ret == {"result": True, "instance_id": IID, "step": "minion", "comment": "key accepted",
                   "seconds": ret["seconds"], "key_seconds": 1.5}
    assert fired[0]["result"] is True and fired[0]["key_seconds"] == 1.5
