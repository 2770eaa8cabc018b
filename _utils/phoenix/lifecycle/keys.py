"""Whether a pending minion key may be accepted: the instance must prove who it is, and AWS and the ledger
must agree that it is being provisioned right now.

The master fires ``salt/auth`` with ``act: pend`` every time a minion with a pending key tries to
authenticate. With ``auth_events_autosign_grains: [pend]`` in the master config (Salt 3008,
``salt/master.py``) the event carries the minion's ``autosign_grains``: here the EC2 instance identity
document and its signature, which the instance fetched from its metadata service. Nothing in such an event
is trusted (a minion can forge ``salt/auth`` too): :func:`review` accepts only when **all** of these hold:

1. the id is an EC2 instance id;
2. the ledger has an in-flight LAUNCHING action for it;
3. no key was ever accepted for that id (the ledger remembers, for ever);
4. the identity document was never used before (each document once, for ever);
5. AWS says the instance is ``Pending:Wait`` in the action's group, and the group is managed;
6. the document's signature verifies against the configured certificate (AWS's per region certificate;
   localcloud's test certificate in tests), its ``instanceId`` is the minion id and its ``pendingTime`` is
   recent (on AWS's clock);
7. the key the event names is the key waiting in Salt's pending list.

Salt's own ``auto_accept``, ``autosign_file``, ``autosign_grains_dir`` and ``open_mode`` must stay off:
they would accept on grains alone. A refused key stays pending.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

from phoenix.lifecycle import messages
from phoenix.lifecycle.ledger import LAUNCHING, Ledger

DOCUMENT_GRAIN = "phoenix_identity_document"
SIGNATURE_GRAIN = "phoenix_identity_signature"
WAITING = "Pending:Wait"


@dataclass(frozen=True)
class Decision:
    """The outcome of :func:`review`; ``reason`` says why in one sentence."""

    accept: bool
    instance_id: str
    reason: str
    token: str | None = None
    fingerprint: str | None = None
    digest: str | None = None


def fingerprint(pub: str) -> str:
    """SHA-256 of a public key's PEM text (whitespace at the ends ignored)."""
    return hashlib.sha256(pub.strip().encode()).hexdigest()


def digest(document: str) -> str:
    """SHA-256 of an identity document's exact text."""
    return hashlib.sha256(document.encode()).hexdigest()


def review(event: dict[str, Any], *, ledger: Ledger, instance_state: Callable[[str], tuple[str | None, str | None]],
           verify: Callable[..., dict[str, Any]], certificate_pem: str, now: Callable[[], datetime],
           max_age_seconds: float, pending_pub: Callable[[str], str | None],
           managed: Callable[[str], bool]) -> Decision:
    """Decide about one ``salt/auth`` event (see the module docstring for the checks, in order).

    ``instance_state(id)`` returns ``(LifecycleState, group)`` from AWS (``(None, None)`` if AWS does not
    know the instance); ``now()`` is AWS's clock after that call; ``pending_pub(id)`` the pending key's PEM
    in Salt (``None`` if nothing is pending); ``verify`` is :func:`phoenix.lifecycle.identity.verify`.
    """
    raw_id = event.get("id")
    instance_id = raw_id if isinstance(raw_id, str) else repr(raw_id)

    def refuse(reason: str, **extra: Any) -> Decision:
        return Decision(False, instance_id, reason, **extra)

    if not messages.valid_instance_id(raw_id):
        return refuse(f"minion id {instance_id!r} is not an EC2 instance id")
    act = event.get("act")
    if act == "denied":
        return refuse("Salt denied this key: another key for this id is already pending or accepted")
    if act != "pend":
        return refuse(f"not a pending key (act {act!r})")
    pub = event.get("pub")
    if not isinstance(pub, str) or not pub.strip():
        return refuse("the auth event names no public key")
    action = ledger.in_flight(instance_id, LAUNCHING)
    if action is None:
        return refuse("no in-flight LAUNCHING lifecycle action for this instance in the ledger")
    if ledger.key_accepted_before(instance_id):
        return refuse("a key was already accepted for this instance id; a second key is never accepted",
                      token=action.token)
    grains = event.get("autosign_grains") or {}
    document = grains.get(DOCUMENT_GRAIN) if hasattr(grains, "get") else None
    signature = grains.get(SIGNATURE_GRAIN) if hasattr(grains, "get") else None
    if not isinstance(document, str) or not isinstance(signature, str) or not document or not signature:
        return refuse(f"no identity document: the minion must send the {DOCUMENT_GRAIN} and {SIGNATURE_GRAIN} "
                      "grains as autosign_grains (and the master needs auth_events_autosign_grains: [pend])",
                      token=action.token)
    doc_digest = digest(document)
    if ledger.document_used(doc_digest):
        return refuse("this identity document was already used to accept a key (replay)", token=action.token)
    state, group = instance_state(instance_id)
    if state != WAITING:
        return refuse(f"AWS says the instance is {state or 'unknown'}, not {WAITING}", token=action.token)
    if group != action.group or not managed(group):
        return refuse(f"AWS puts the instance in group {group!r}, not the managed group {action.group!r} of its "
                      "lifecycle action", token=action.token)
    try:
        verify(document, signature, certificate_pem, instance_id=instance_id, now=now(),
               max_age_seconds=max_age_seconds)
    except Exception as exc:  # IdentityError(reason) and anything a malformed document provokes
        return refuse(f"identity document refused: {exc}", token=action.token)
    waiting = pending_pub(instance_id)
    if waiting is None:
        return refuse("no key of this id is pending in Salt", token=action.token)
    if fingerprint(waiting) != fingerprint(pub):
        return refuse("the pending key is not the key that sent this identity document", token=action.token)
    print_ = fingerprint(pub)
    if not ledger.record_key(instance_id, print_, doc_digest, action.token):
        return refuse("a key for this id or this identity document was accepted meanwhile", token=action.token)
    return Decision(True, instance_id, "identity document verified; ledger and AWS agree", token=action.token,
                    fingerprint=print_, digest=doc_digest)


__all__ = ["review", "Decision", "fingerprint", "digest", "DOCUMENT_GRAIN", "SIGNATURE_GRAIN", "WAITING"]
