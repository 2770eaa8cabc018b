"""Event tags of the provisioning loop, all on the master bus under ``phoenix/lifecycle/``.

Only the engine fires the two *trigger* tags, after the action is durably in the ledger::

    phoenix/lifecycle/launching/<instance-id>      reactor -> orch.provision
    phoenix/lifecycle/terminating/<instance-id>    reactor -> orch.retire
    phoenix/lifecycle/warmup                       reactor -> orch.warmup (the engine's start: loads the
                                                   orchestration machinery, no AWS call)

Any minion can forge those tags, so what they carry is never trusted: the orchestration re-reads the
ledger and AWS. Progress and outcomes (for people and tests to watch)::

    phoenix/lifecycle/recorded/<id>          the engine wrote a new action to the ledger
    phoenix/lifecycle/duplicate/<id>         a redelivered notification (same token) was dropped
    phoenix/lifecycle/malformed              a queue message left for the redrive policy (reason)
    phoenix/lifecycle/heartbeat/<id>         a heartbeat was recorded with AWS
    phoenix/lifecycle/expired/<id>           the global timeout passed; heartbeats stopped
    phoenix/lifecycle/gone/<id>              AWS has no open action any more (final)
    phoenix/lifecycle/resumed/<id>           the engine restarted and re-triggered an open action
    phoenix/lifecycle/key/accepted/<id>      the minion key was accepted (all checks passed)
    phoenix/lifecycle/key/refused/<id>       the minion key stays pending (reason)
    phoenix/lifecycle/ignored/<id>           a trigger found nothing to do (forged, repeated, finished)
    phoenix/lifecycle/step/<id>              a provisioning step finished (step, result, seconds)
    phoenix/lifecycle/continued/<id>         CONTINUE accepted by AWS
    phoenix/lifecycle/abandoned/<id>         ABANDON accepted by AWS (reason)
    phoenix/lifecycle/retired/<id>           the terminated instance's key and minion cache are gone
    phoenix/lifecycle/warmed                 orch.warmup ran in the reactor's process (seconds)
"""

from __future__ import annotations

PREFIX = "phoenix/lifecycle"


def tag(what: str, instance_id: str | None = None) -> str:
    """``phoenix/lifecycle/<what>[/<instance-id>]``."""
    return f"{PREFIX}/{what}/{instance_id}" if instance_id else f"{PREFIX}/{what}"


__all__ = ["PREFIX", "tag"]
