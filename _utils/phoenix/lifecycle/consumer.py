"""The queue consumer and the heartbeat loop (what the ``lifecycle`` engine runs on the master).

For each SQS message (long poll, at least once delivery):

1. parse and validate it (:mod:`phoenix.lifecycle.messages`); a test notification is deleted, a malformed
   one is logged once and left for the queue's redrive policy;
2. a token already in the ledger is a redelivery: delete the message, nothing else;
3. read the hook's heartbeat/global timeouts from AWS, write the action to the ledger (durable), and only
   then delete the message;
4. fire ``phoenix/lifecycle/<launching|terminating>/<instance-id>``.

The heartbeat loop records a heartbeat for every in-flight action at a third of its ``HeartbeatTimeout``
until it completes or its global timeout passes. "No active Lifecycle Action found" is final. On start the
consumer :meth:`resume` s the ledger: claims of orchestrations that died with the master are released and
every open action is triggered again.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

from phoenix.aws import AWS, PhoenixAWSError
from phoenix.lifecycle import events, messages
from phoenix.lifecycle.ledger import COMPLETING, EXPIRED, GONE, IN_FLIGHT, Action, Ledger
from phoenix.lifecycle.options import LifecycleOptions

log = logging.getLogger(__name__)

Emit = Callable[[str, dict[str, Any]], Any]
GLOBAL_TIMEOUT_CAP = 172800  # AWS: at most 48 hours, or 100 x HeartbeatTimeout, whichever is smaller
RETRY_COMPLETION = 30.0  # seconds a claimed CONTINUE/ABANDON may take before the engine sends it again
RETRIGGER = 120.0  # seconds an in-flight action may stay unclaimed before its trigger is fired again
# after a (re)start: seconds before open actions are triggered and the queue is read (Salt starts the reactor
# beside the engine; on a loaded 2-core machine it listened only 7.6 s after both started, and a trigger
# fired before then is lost until RETRIGGER)
RESUME_DELAY = 10.0


def no_active_action(exc: Exception) -> bool:
    """AWS's final answer for an action that is no longer open."""
    return isinstance(exc, PhoenixAWSError) and "No active Lifecycle Action found" in (exc.message or "")


def trigger(emit: Emit, action: Action, **extra: Any) -> None:
    """Fire the trigger event for ``action`` (the reactor starts one orchestration from it)."""
    data = {"instance_id": action.instance_id, "group": action.group, "hook": action.hook,
            "transition": action.transition, **extra}
    emit(events.tag(action.kind, action.instance_id), data)


class Consumer:
    """One consumer per master. ``emit(tag, data)`` fires on the master bus; ``clock`` is epoch seconds."""

    def __init__(self, aws: AWS, ledger: Ledger, options: LifecycleOptions, emit: Emit,
                 clock: Callable[[], float] = time.time, complete: Callable[[Action], Any] | None = None) -> None:
        self.aws = aws
        self.ledger = ledger
        self.options = options
        self.emit = emit
        self.clock = clock
        self.queue_url = options.require_queue()
        self.groups = options.require_groups()
        self._hooks: dict[tuple[str, str], tuple[int, int]] = {}
        self._malformed_seen: set[str] = set()
        self._complete = complete
        self._last_retry: dict[str, float] = {}

    # -- the queue -------------------------------------------------------------------------------
    def poll_once(self, wait_seconds: int | None = None) -> int:
        """Receive one batch (long poll) and handle it; returns the number of messages received."""
        wait = self.options.wait_seconds if wait_seconds is None else wait_seconds
        response = self.aws.call("sqs", "receive_message", self.queue_url, QueueUrl=self.queue_url,
                                 MaxNumberOfMessages=10, WaitTimeSeconds=int(wait),
                                 VisibilityTimeout=self.options.visibility_timeout,
                                 AttributeNames=["ApproximateReceiveCount"])
        batch = response.get("Messages", [])
        for raw in batch:
            self.handle(raw)
        return len(batch)

    def _delete(self, raw: dict[str, Any]) -> None:
        self.aws.call("sqs", "delete_message", self.queue_url, QueueUrl=self.queue_url,
                      ReceiptHandle=raw["ReceiptHandle"])

    def handle(self, raw: dict[str, Any]) -> str:
        """Handle one received message; returns what happened (test, malformed, duplicate, recorded, retry)."""
        message_id = raw.get("MessageId", "?")
        parsed = messages.parse(raw.get("Body", ""), self.groups, self.options.account)
        if parsed is messages.TEST:
            log.info("lifecycle: deleting test notification %s", message_id)
            self._delete(raw)
            return "test"
        if isinstance(parsed, messages.Malformed):
            if message_id not in self._malformed_seen:  # log each message once, not at every redelivery
                self._malformed_seen.add(message_id)
                log.warning("lifecycle: message %s left on the queue for its redrive policy: %s", message_id,
                            parsed.reason)
                self.emit(events.tag("malformed"), {"message_id": message_id, "reason": parsed.reason})
            return "malformed"
        assert isinstance(parsed, messages.Notification)
        if self.ledger.get(parsed.token) is not None:
            log.info("lifecycle: duplicate notification for %s (token already in the ledger), deleted",
                     parsed.instance_id)
            self._delete(raw)
            self.emit(events.tag("duplicate", parsed.instance_id), {"instance_id": parsed.instance_id,
                                                                    "message_id": message_id})
            return "duplicate"
        try:
            heartbeat_timeout, global_timeout = self._hook_timeouts(parsed.group, parsed.hook)
        except (PhoenixAWSError, LookupError) as exc:
            if message_id not in self._malformed_seen:
                self._malformed_seen.add(message_id)
                log.warning("lifecycle: message %s for %s kept on the queue: %s", message_id, parsed.instance_id,
                            exc)
                self.emit(events.tag("malformed"), {"message_id": message_id, "reason": str(exc),
                                                    "instance_id": parsed.instance_id})
            return "retry"
        now = self.clock()
        start = parsed.time if parsed.time is not None and parsed.time <= now else now
        new = self.ledger.record(parsed.token, parsed.instance_id, parsed.group, parsed.hook, parsed.transition,
                                 heartbeat_timeout=heartbeat_timeout, global_deadline=start + global_timeout,
                                 notified_at=parsed.time, received_at=now, metadata=parsed.metadata)
        self._delete(raw)  # the action is durable in the ledger now
        if not new:  # a concurrent consumer recorded it between our check and our insert
            return "duplicate"
        action = self.ledger.get(parsed.token)
        assert action is not None
        log.info("lifecycle: %s action for %s in %s recorded (heartbeat timeout %ss)", action.kind,
                 action.instance_id, action.group, heartbeat_timeout)
        self.emit(events.tag("recorded", action.instance_id), {"instance_id": action.instance_id,
                                                              "transition": action.transition,
                                                              "group": action.group})
        self.ledger.triggered(action.token, self.clock())
        trigger(self.emit, action)
        return "recorded"

    def _hook_timeouts(self, group: str, hook: str) -> tuple[int, int]:
        key = (group, hook)
        if key not in self._hooks:
            found = self.aws.call("autoscaling", "describe_lifecycle_hooks", group, AutoScalingGroupName=group,
                                  LifecycleHookNames=[hook]).get("LifecycleHooks", [])
            if not found:
                raise LookupError(f"group {group} has no lifecycle hook {hook}")
            heartbeat = int(found[0].get("HeartbeatTimeout") or 3600)
            # AWS: 100 x HeartbeatTimeout or 48 h, whichever is smaller (GlobalTimeout reports it; moto
            # reports 48 h for every hook, so the smaller of both is taken)
            cap = min(int(found[0].get("GlobalTimeout") or GLOBAL_TIMEOUT_CAP), 100 * heartbeat, GLOBAL_TIMEOUT_CAP)
            self._hooks[key] = (heartbeat, cap)
        return self._hooks[key]

    # -- heartbeats ------------------------------------------------------------------------------
    def heartbeat_once(self) -> list[tuple[str, str]]:
        """Send the heartbeats that are due; returns ``[(instance_id, what)]`` for what was done."""
        done: list[tuple[str, str]] = []
        now = self.clock()
        for action in self.ledger.open_actions():
            if action.state == COMPLETING:
                # a completion still stuck after RETRY_COMPLETION seconds did not get through: send it again
                began = action.completed_at or action.received_at
                if (self._complete is not None and now - began >= RETRY_COMPLETION
                        and now - self._last_retry.get(action.token, 0) >= RETRY_COMPLETION):
                    self._last_retry[action.token] = now
                    self._complete(action)  # a completion that did not get through: try again
                    done.append((action.instance_id, "completion retried"))
                continue
            if now >= action.global_deadline:
                if not self.ledger.finish(action.token, EXPIRED, "the global timeout passed: AWS applies the "
                                          "hook's DefaultResult", from_states=(IN_FLIGHT,)):
                    continue
                log.warning("lifecycle: %s action for %s passed its global timeout; heartbeats stop",
                            action.kind, action.instance_id)
                self.emit(events.tag("expired", action.instance_id), {"instance_id": action.instance_id})
                done.append((action.instance_id, EXPIRED))
                continue
            if action.claimed_by is None and now - (action.triggered_at or action.received_at) >= RETRIGGER:
                # nobody took it up: the event was lost (reactor busy or not running yet); fire it again
                self.ledger.triggered(action.token, now)
                log.info("lifecycle: %s action for %s is not being worked on: triggering it again",
                         action.kind, action.instance_id)
                trigger(self.emit, action, retriggered=True)
                done.append((action.instance_id, "retriggered"))
            if now < action.heartbeat_due():
                continue
            try:
                self.aws.call("autoscaling", "record_lifecycle_action_heartbeat", action.instance_id,
                              AutoScalingGroupName=action.group, LifecycleHookName=action.hook,
                              LifecycleActionToken=action.token)
            except PhoenixAWSError as exc:
                if no_active_action(exc):
                    if not self.ledger.finish(action.token, GONE, exc.message, from_states=(IN_FLIGHT,)):
                        continue  # completed meanwhile: the completion's state stands
                    log.info("lifecycle: %s has no active lifecycle action any more (final): %s",
                             action.instance_id, exc.message)
                    self.emit(events.tag("gone", action.instance_id), {"instance_id": action.instance_id,
                                                                       "reason": exc.message})
                    done.append((action.instance_id, GONE))
                else:
                    log.warning("lifecycle: heartbeat for %s failed (will retry): %s", action.instance_id, exc)
                continue
            self.ledger.heartbeat_sent(action.token, now)
            log.debug("lifecycle: heartbeat for %s", action.instance_id)
            self.emit(events.tag("heartbeat", action.instance_id), {"instance_id": action.instance_id,
                                                                    "heartbeats": action.heartbeats + 1})
            done.append((action.instance_id, "heartbeat"))
        return done

    # -- restart ---------------------------------------------------------------------------------
    def resume(self) -> list[str]:
        """After a (re)start: release stale claims; every in-flight action is triggered again by the
        heartbeat loop ``RESUME_DELAY`` seconds later (the reactor may not listen yet right now)."""
        released = self.ledger.release_claims()
        resumed: list[str] = []
        due = self.clock() - RETRIGGER + RESUME_DELAY
        for action in self.ledger.open_actions():
            if action.state != IN_FLIGHT:
                continue
            resumed.append(action.instance_id)
            self.ledger.triggered(action.token, due)
            self.ledger.note(action.instance_id, "resumed", "the engine restarted: triggered again",
                             token=action.token)
            log.info("lifecycle: resuming %s action for %s", action.kind, action.instance_id)
            self.emit(events.tag("resumed", action.instance_id), {"instance_id": action.instance_id,
                                                                 "transition": action.transition})
        if released:
            log.info("lifecycle: released %s orchestration claim(s) from before the restart", released)
        return resumed


__all__ = ["Consumer", "no_active_action", "trigger", "GLOBAL_TIMEOUT_CAP"]
