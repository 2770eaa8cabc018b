"""Helpers for tests and demos that drive localcloud with plain boto3."""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Callable

import boto3
from botocore.exceptions import ClientError


def client(endpoint: str, service: str, region: str = "us-east-1") -> Any:
    """A boto3 client for ``service`` pointed at localcloud (dummy credentials, no retries)."""
    from botocore.config import Config

    return boto3.client(service, endpoint_url=endpoint, region_name=region, aws_access_key_id="localcloud",
                        aws_secret_access_key="localcloud",
                        config=Config(retries={"max_attempts": 1, "mode": "standard"}))


def wait_until(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05,
               message: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}; last value: {last!r}")


Decision = Callable[[dict[str, Any]], str | None]


class Provisioner:
    """A stand-in for the Salt provisioning flow: reads lifecycle notifications from an SQS queue and
    completes each action with what ``decide(message)`` returns ("CONTINUE", "ABANDON", or None to
    leave it open). Run it with ``with Provisioner(...)``."""

    def __init__(self, endpoint: str, queue_url: str, decide: Decision | None = None,
                 region: str = "us-east-1") -> None:
        self.sqs = client(endpoint, "sqs", region)
        self.asg = client(endpoint, "autoscaling", region)
        self.queue_url = queue_url
        self.decide: Decision = decide or (lambda message: "CONTINUE")
        self.messages: list[dict[str, Any]] = []
        self.completed: list[tuple[str, str]] = []
        self.errors: list[str] = []  # actions that could not be completed (e.g. the instance is gone)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="provisioner", daemon=True)

    def __enter__(self) -> "Provisioner":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                batch = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10,
                                                 WaitTimeSeconds=0).get("Messages", [])
            except Exception:
                if self._stop.is_set():
                    return
                raise
            for raw in batch:
                message = json.loads(raw["Body"])
                self.messages.append(message)
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=raw["ReceiptHandle"])
                if "LifecycleActionToken" not in message:
                    continue
                result = self.decide(message)
                if result is None:
                    continue
                try:
                    self.asg.complete_lifecycle_action(
                        AutoScalingGroupName=message["AutoScalingGroupName"],
                        LifecycleHookName=message["LifecycleHookName"],
                        LifecycleActionToken=message["LifecycleActionToken"], LifecycleActionResult=result)
                except ClientError as exc:
                    self.errors.append(f"{message['EC2InstanceId']}: {exc}")
                    continue
                self.completed.append((message["EC2InstanceId"], result))
            self._stop.wait(0.05)
