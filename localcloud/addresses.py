"""Private IP addresses for localcloud's instances: one loopback address each, in a /16 of 127.0.0.0/8.

Every launched instance gets its own address, which localcloud reports as the instance's
``PrivateIpAddress`` and on which the instance's processes (salt-minion, NGINX, the app) listen, as
they would on their own host. Linux routes all of 127.0.0.0/8 to the loopback interface, so these
addresses need no setup and never leave the machine.

Each :class:`AddressPool` takes a random /16 (``127.X.0.0/16``, X in 2..254, so never 127.0.0.1 nor
Debian's 127.0.1.1) and holds it for its lifetime with an abstract Unix socket named after it: a second
pool, in this process or another (concurrent test runs on one machine), sees the name taken and picks
another /16. The name disappears with the socket or the process, so nothing is left behind.
"""

from __future__ import annotations

import errno
import ipaddress
import random
import socket
import sys
import threading

RESERVATION_PREFIX = "phoenix-localcloud-127."


class AddressPoolExhausted(RuntimeError):
    """No free /16 or no free address was found."""


class AddressPool:
    """Hands out unique, bindable addresses from one reserved ``127.X.0.0/16``."""

    def __init__(self, rng: random.Random | None = None, attempts: int = 64) -> None:
        self._rng = rng or random.SystemRandom()
        self._lock = threading.Lock()
        self._next = 0
        self._handed: set[str] = set()
        self._reservation: socket.socket | None = None
        self.second_octet = self._reserve(attempts)

    @property
    def network(self) -> ipaddress.IPv4Network:
        """The /16 this pool hands addresses from."""
        return ipaddress.IPv4Network(f"127.{self.second_octet}.0.0/16")

    def _reserve(self, attempts: int) -> int:
        for _ in range(attempts):
            octet = self._rng.randint(2, 254)
            if sys.platform.startswith("linux"):
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    sock.bind(f"\0{RESERVATION_PREFIX}{octet}")
                except OSError as exc:
                    sock.close()
                    if exc.errno == errno.EADDRINUSE:
                        continue  # another localcloud holds this /16
                    raise
                self._reservation = sock
            return octet
        raise AddressPoolExhausted(f"no free 127.X.0.0/16 found in {attempts} attempts")

    def allocate(self) -> str:
        """The next unused address of the pool that can be bound (checked with a real bind)."""
        with self._lock:
            while self._next < 254 * 256:
                third, fourth = divmod(self._next, 254)
                self._next += 1
                address = f"127.{self.second_octet}.{third}.{fourth + 1}"
                if address in self._handed or not bindable(address):
                    continue
                self._handed.add(address)
                return address
        raise AddressPoolExhausted(f"every address of {self.network} was handed out")

    def close(self) -> None:
        """Give the /16 back (other pools may take it from now on)."""
        if self._reservation is not None:
            self._reservation.close()
            self._reservation = None

    def __del__(self) -> None:  # pragma: no cover - best effort
        self.close()


def bindable(address: str) -> bool:
    """True when a TCP socket can bind ``address`` (port chosen by the kernel)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((address, 0))
        except OSError:
            return False
    return True
