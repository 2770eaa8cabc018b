"""Phoenix's lifecycle engine: the master side of provisioning Auto Scaling instances through Salt.

It owns the lifecycle ledger and does three things, each in its own thread:

* **queue**: long-polls the SQS queue the lifecycle hooks notify, validates each message, dedupes on
  ``LifecycleActionToken``, writes the action to the ledger and only then deletes the message, and fires
  ``phoenix/lifecycle/<launching|terminating>/<instance-id>`` for the reactor;
* **heartbeats**: every in-flight action at a third of its ``HeartbeatTimeout`` until it completes or its
  global timeout passes (and retries completions that did not get through);
* **keys**: reviews every ``salt/auth`` ``pend`` event (see :mod:`phoenix.lifecycle.keys`) and accepts the
  key only when ledger, AWS and the instance identity document agree; a refused key stays pending, with a
  ``phoenix/lifecycle/key/refused/<id>`` event and a log line saying why.

On start it resumes the ledger: open actions are triggered again (their orchestration died with the master).

Master config (the whole file: ``salt/master.d/phoenix-lifecycle.conf``):

.. code-block:: yaml

    engines:
      - lifecycle: {}          # settings from phoenix:lifecycle (below); keys here override them
    auth_events: true
    auth_events_autosign_grains: [pend]
    phoenix:
      aws: {region: eu-west-1}
      lifecycle:
        queue_url: https://sqs.eu-west-1.amazonaws.com/123456789012/web-lifecycle
        groups: [web-*]
        identity_certificate: /etc/salt/phoenix/aws-identity.pem
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

try:
    import phoenix.aws
    import phoenix.lifecycle.cloud
    import phoenix.lifecycle.consumer
    import phoenix.lifecycle.events
    import phoenix.lifecycle.keys
    import phoenix.lifecycle.ledger
    import phoenix.lifecycle.messages
    import phoenix.lifecycle.options
    import phoenix.lifecycle.signal
    import phoenix.saltglue

    HAS_PHOENIX = True
    IMPORT_ERROR = ""
except ImportError as exc:  # pragma: no cover - reported by __virtual__
    HAS_PHOENIX = False
    IMPORT_ERROR = str(exc)

log = logging.getLogger(__name__)

__virtualname__ = "lifecycle"


def __virtual__():
    if not HAS_PHOENIX:
        return (False, f"lifecycle engine: the phoenix package (and boto3) must be importable: {IMPORT_ERROR}")
    return __virtualname__


def _options(overrides: dict[str, Any]) -> "phoenix.lifecycle.options.LifecycleOptions":
    section = phoenix.saltglue.settings(__opts__, globals().get("__pillar__"), "phoenix:lifecycle", overrides)
    return phoenix.lifecycle.options.options_from(section, __opts__.get("cachedir"))


def _aws() -> "phoenix.aws.AWS":
    return phoenix.saltglue.aws(__opts__, globals().get("__pillar__"))


class _Keys:
    """The key-review thread: salt/auth pend events -> review -> accept, or refuse with a reason."""

    def __init__(self, opts: Any, options: Any, ledger: Any, emit: Any, stop: threading.Event) -> None:
        import salt.key

        self.opts = opts
        self.options = options
        self.ledger = ledger
        self.emit = emit
        self.stop = stop
        self.aws = _aws()
        self.salt_keys = salt.key.get_key(opts)
        self.last_pend: dict[str, dict[str, Any]] = {}
        self.last_reason: dict[str, str] = {}
        self.warmed = threading.Event()  # orch.warmup ran in the reactor (phoenix/lifecycle/warmed)

    def pending_pub(self, instance_id: str) -> str | None:
        entry = self.salt_keys.cache.fetch("keys", instance_id) or {}
        return entry.get("pub") if entry.get("state") == "pending" else None

    def accepted(self, instance_id: str) -> bool:
        entry = self.salt_keys.cache.fetch("keys", instance_id) or {}
        return entry.get("state") == "accepted"

    def review(self, data: dict[str, Any]) -> None:
        iid = data.get("id")
        if data.get("act") == "pend" and phoenix.lifecycle.messages.valid_instance_id(iid):
            if self.accepted(iid):
                # a retry the minion sent before we accepted its key (the master answers it as accepted)
                log.debug("lifecycle: pend event of %s after its key was accepted: nothing to do", iid)
                return
            self.last_pend[iid] = data
        try:
            import phoenix.lifecycle.identity as identity

            certificate = self.options.certificate_pem()
            decision = phoenix.lifecycle.keys.review(
                data, ledger=self.ledger,
                instance_state=lambda i: phoenix.lifecycle.cloud.instance_state(self.aws, i),
                verify=identity.verify, certificate_pem=certificate, now=self.aws.server_time,
                max_age_seconds=self.options.identity_max_age, pending_pub=self.pending_pub,
                managed=lambda g: phoenix.lifecycle.messages.managed(g, self.options.groups))
        except Exception as exc:  # AWS unreachable, no certificate, ...: refuse, the minion asks again
            decision = phoenix.lifecycle.keys.Decision(False, str(iid), f"key review failed: {exc}")
        tag = phoenix.lifecycle.events.tag
        if not decision.accept:
            log.warning("lifecycle: key of %s stays pending: %s", decision.instance_id, decision.reason)
            if phoenix.lifecycle.messages.valid_instance_id(iid) and self.last_reason.get(iid) != decision.reason:
                self.last_reason[iid] = decision.reason  # one journal line per reason, not per retry
                self.ledger.note(iid, "key_refused", decision.reason, token=decision.token)
            self.emit(tag("key/refused", iid if isinstance(iid, str) and len(iid) < 64 else None),
                      {"instance_id": str(iid)[:64], "reason": decision.reason, "act": data.get("act")})
            return
        self.salt_keys.accept(match_dict={"minions_pre": [decision.instance_id]})
        if not self.accepted(decision.instance_id):
            reason = "Salt did not move the key to accepted"
            log.error("lifecycle: key of %s: %s", decision.instance_id, reason)
            self.ledger.note(decision.instance_id, "key_refused", reason, token=decision.token)
            self.emit(tag("key/refused", decision.instance_id), {"instance_id": decision.instance_id,
                                                                 "reason": reason})
            return
        self.last_pend.pop(decision.instance_id, None)
        self.ledger.note(decision.instance_id, "key_accepted", decision.reason, token=decision.token)
        log.info("lifecycle: key of %s accepted: %s", decision.instance_id, decision.reason)
        self.emit(tag("key/accepted", decision.instance_id), {"instance_id": decision.instance_id,
                                                              "fingerprint": decision.fingerprint})

    def run(self) -> None:
        import salt.utils.event

        prefix = phoenix.lifecycle.events.tag("recorded") + "/"
        warmed = phoenix.lifecycle.events.tag("warmed")
        with salt.utils.event.get_master_event(self.opts, self.opts["sock_dir"], listen=True) as bus:
            while not self.stop.is_set():
                event = bus.get_event(wait=1, full=True)
                if not event:
                    continue
                tag, data = event.get("tag", ""), event.get("data") or {}
                try:
                    if tag == "salt/auth" and data.get("act") in ("pend", "denied"):
                        self.review(data)
                    elif tag == warmed:
                        self.warmed.set()
                    elif tag.startswith(prefix):
                        # a new action: a key that pended before the notification came gets its review now
                        cached = self.last_pend.get(tag[len(prefix):])
                        if cached is not None:
                            self.review(cached)
                except Exception:  # never let one event stop key reviews
                    log.exception("lifecycle: key review of %s failed", data.get("id"))


WARMUP_FIRST = 2.0  # seconds after the engine's start: the reactor starts with it and must listen first
WARMUP_RETRY = 60.0  # seconds to wait for phoenix/lifecycle/warmed before firing again (a cold reactor on a
#                     loaded machine took 20 s to answer the first one)
WARMUP_ATTEMPTS = 3


def _warm_up(emit: Any, warmed: threading.Event, stop: threading.Event) -> None:
    """Fire ``phoenix/lifecycle/warmup`` until the reactor's ``orch.warmup`` reports back (a reactor that
    was not listening yet misses the first one). It loads the orchestration machinery into the reactor's
    process, so the first launches after a master start do not each pay for it."""
    for attempt in range(1, WARMUP_ATTEMPTS + 1):
        if stop.wait(WARMUP_FIRST if attempt == 1 else WARMUP_RETRY) or warmed.is_set():
            return
        emit(phoenix.lifecycle.events.tag("warmup"), {"attempt": attempt})
    if not stop.wait(WARMUP_RETRY) and not warmed.is_set():
        log.warning("lifecycle: the reactor did not run orch.warmup (is reactor/lifecycle/warmup.sls in the "
                    "reactor config?): the first launches load the orchestration machinery themselves")


def _loop(name: str, stop: threading.Event, step: Any, pause: float, delay: float = 0.0,
          ready: threading.Event | None = None) -> None:
    """Run ``step`` until ``stop``; the first once ``ready`` is set or ``delay`` seconds have passed (the
    queue waits for the reactor, which Salt starts beside this engine: a trigger fired before it listens
    would wait for RETRIGGER; ``phoenix/lifecycle/warmed`` proves that it listens)."""
    deadline = time.monotonic() + delay
    while time.monotonic() < deadline and not (ready is not None and ready.is_set()):
        if stop.wait(0.2):
            return
    while not stop.is_set():
        try:
            step()
        except Exception:
            log.exception("lifecycle: %s failed, retrying in %ss", name, pause)
            stop.wait(pause)
            continue
        stop.wait(pause if name == "heartbeats" else 0.05)


def start(interval: float = 1.0, **overrides: Any) -> None:
    """Run the engine (Salt calls this in its own process and restarts it if it dies)."""
    options = _options(overrides)
    ledger = phoenix.lifecycle.ledger.Ledger(options.ledger)
    fire = phoenix.saltglue.emitter(__opts__)

    def emit(tag: str, data: dict[str, Any]) -> bool:
        return phoenix.saltglue.fire(fire, tag, data, log)

    signal_aws = _aws()

    def complete(action: Any) -> Any:
        return phoenix.lifecycle.signal.send(signal_aws, ledger, action, emit)

    queue = phoenix.lifecycle.consumer.Consumer(_aws(), ledger, options, emit)
    beats = phoenix.lifecycle.consumer.Consumer(_aws(), ledger, options, emit, complete=complete)
    stop = threading.Event()
    keys = _Keys(__opts__, options, ledger, emit, stop)
    log.info("lifecycle engine: queue %s, groups %s, ledger %s", options.queue_url, ", ".join(options.groups),
             options.ledger)
    threads = [threading.Thread(target=keys.run, name="lifecycle-keys", daemon=True)]
    # let the key thread subscribe before anything is triggered
    threads[0].start()
    time.sleep(0.5)
    threading.Thread(target=_warm_up, args=(emit, keys.warmed, stop), name="lifecycle-warmup", daemon=True).start()
    queue.resume()
    threads += [threading.Thread(target=_loop, args=("queue", stop, queue.poll_once, 2.0,
                                                      phoenix.lifecycle.consumer.RESUME_DELAY, keys.warmed),
                                 name="lifecycle-queue", daemon=True),
                threading.Thread(target=_loop, args=("heartbeats", stop, beats.heartbeat_once, float(interval)),
                                 name="lifecycle-heartbeats", daemon=True)]
    for thread in threads[1:]:
        thread.start()
    try:
        while all(t.is_alive() for t in threads):
            time.sleep(1)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=15)
    log.error("lifecycle engine: a worker thread stopped; Salt restarts the engine")
