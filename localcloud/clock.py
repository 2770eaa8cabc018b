"""A controllable clock: virtual time that runs at a chosen rate and can jump forward.

Everything localcloud times (boot delays, heartbeat timeouts, PauseTime, instance warm-up, instance
age for MaxInstanceLifetime, launch times, stack event times) reads this clock, so a test can let a
24-hour day pass in an instant with ``clock.advance(86400)``.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone


class Clock:
    """Virtual wall clock (epoch seconds) = start + rate * real elapsed + manual advances."""

    def __init__(self, rate: float = 1.0, start: float | None = None) -> None:
        if rate <= 0:
            raise ValueError(f"clock rate must be positive, got {rate!r}")
        self._lock = threading.Lock()
        self._rate = float(rate)
        self._base = time.time() if start is None else float(start)
        self._mono0 = time.monotonic()
        self._listeners: list[threading.Event] = []

    @property
    def rate(self) -> float:
        """Virtual seconds that pass per real second."""
        return self._rate

    def now(self) -> float:
        """Current virtual time in epoch seconds."""
        with self._lock:
            return self._base + (time.monotonic() - self._mono0) * self._rate

    def datetime(self) -> datetime:
        """Current virtual time as a naive UTC datetime (the form moto stores)."""
        return datetime.fromtimestamp(self.now(), tz=timezone.utc).replace(tzinfo=None)

    def iso(self, when: float | None = None) -> str:
        """ISO 8601 UTC text (``2026-01-01T00:00:00.000Z``) for ``when`` or now."""
        moment = datetime.fromtimestamp(self.now() if when is None else when, tz=timezone.utc)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"

    def advance(self, seconds: float) -> float:
        """Jump forward by ``seconds`` (>= 0) of virtual time; returns the new time."""
        if seconds < 0:
            raise ValueError(f"the clock only moves forward; got advance({seconds!r})")
        with self._lock:
            self._base += float(seconds)
            listeners = list(self._listeners)
        for event in listeners:
            event.set()
        return self.now()

    def set_rate(self, rate: float) -> None:
        """Change the rate from now on, keeping the current virtual time continuous."""
        if rate <= 0:
            raise ValueError(f"clock rate must be positive, got {rate!r}")
        with self._lock:
            mono = time.monotonic()
            self._base += (mono - self._mono0) * self._rate
            self._mono0 = mono
            self._rate = float(rate)

    def subscribe(self, event: threading.Event) -> None:
        """Set ``event`` whenever the clock is advanced (wakes schedulers early)."""
        with self._lock:
            self._listeners.append(event)
