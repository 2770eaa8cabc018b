"""An instance agent that makes each localcloud instance a real Salt minion on its own loopback address.

Plug it into ``LocalCloud(agent=SaltInstanceAgent(...))``. When the group launches an instance, the
agent does what the instance's boot and user data would do in AWS:

1. read the instance's identity document and signature from *its* metadata service
   (``cloud.imds_url(id)``, the stand-in for ``http://169.254.169.254``) and its private IP;
2. write a minion config under ``<base_dir>/<instance id>/``: ``id`` = the instance id, the master at
   ``127.0.0.1`` with the test master's ports, ``source_address`` = the instance's private IP,
   ``autosign_grains: [phoenix_identity_document, phoenix_identity_signature]`` with those grains, and
   the grain ``phoenix_private_ip``; no key is pre-accepted (the minion's key waits in ``pending`` until
   the master accepts it);
3. boot it: start the instance's init (:mod:`localcloud.instance_init`), which starts ``salt-minion`` (a
   real process) and then the instance's boot scripts, if any (``<root_dir>/etc/localcloud/boot.d/*``,
   in name order: what the highstate enabled, see below).

Everything the instance runs descends from its init, which is a *child subreaper*: daemons that detach
(``setsid``, double fork: NGINX, the app) are re-parented to it, not to the machine's PID 1. ``stop(id)``
ends the init, which ends **every process of the instance** (SIGTERM, then SIGKILL) before it exits;
``pids(id)`` lists them from ``/proc`` parent links (NGINX and Salt rewrite their process titles and
environment, so neither can identify them). ``reboot(id)`` ends them the same way and boots the instance
again with the same config, keys and files (what a reboot keeps): the boot scripts bring enabled services
back.

Boot scripts are this agent's stand-in for ``systemctl enable``: an SLS that starts a service on a
localcloud instance (pillar ``phoenix:webapp:service_manager: script``) writes an executable script into
the boot directory, taking ``start``/``stop``/``status``/``reload``; the agent runs ``<script> start``
at every boot after the first. The instance's environment exposes the directory as
``LOCALCLOUD_BOOT_DIR``.

For tests and demos only; everything binds 127.0.0.0/8.
"""

from __future__ import annotations

import getpass
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from localcloud.cloud import LocalCloud

log = logging.getLogger(__name__)

MARKER = "LOCALCLOUD_INSTANCE"
IDENTITY_GRAINS = ["phoenix_identity_document", "phoenix_identity_signature"]
REPO = Path(__file__).resolve().parent.parent
INIT_SCRIPT = Path(__file__).resolve().parent / "instance_init.py"  # run by path: stdlib imports only


def checkout_loader_dirs(repo: Path = REPO) -> dict[str, Any]:
    """Minion options that load Phoenix's loader modules from this source checkout (what ``pip
    install`` of Phoenix gives a production instance through its entry point)."""
    return {"module_dirs": [str(repo / "_modules")], "states_dirs": [str(repo / "_states")],
            "utils_dirs": [str(repo / "_utils")]}


@dataclass
class Instance:
    """One instance's files and processes."""

    instance_id: str
    root: Path
    private_ip: str
    sock_dir: Path
    init: subprocess.Popen[bytes] | None = None
    boots: int = 0

    @property
    def conf_dir(self) -> Path:
        return self.root / "conf"

    @property
    def root_dir(self) -> Path:
        """The minion's ``root_dir``: every default Salt path of the instance is below it."""
        return self.root / "root"

    @property
    def boot_dir(self) -> Path:
        return self.root_dir / "etc" / "localcloud" / "boot.d"

    @property
    def log_file(self) -> Path:
        """The minion's log file."""
        return self.root_dir / "var" / "log" / "salt" / "minion"

    @property
    def console(self) -> Path:
        """What the instance's init printed (one ``boot: <script> start -> <code>`` line per script)."""
        return self.root / "console.log"

    @property
    def boot_log(self) -> list[str]:
        """The init's boot lines so far, oldest first."""
        if not self.console.exists():
            return []
        return [line for line in self.console.read_text(errors="replace").splitlines()
                if line.startswith("boot: ")]


class SaltInstanceAgent:
    """Runs a real ``salt-minion`` per localcloud instance (see the module docstring).

    ``base_dir``: where each instance's files go (``<base_dir>/<instance id>/``), e.g. pytest's tmp dir.
    ``master_port``/``publish_port``: the test master's ``ret_port``/``publish_port``.
    ``minion_config``: extra minion options (merged last), e.g. ``{"log_level_logfile": "debug"}``.
    ``loader_dirs``: load Phoenix's modules from this checkout (default True).
    ``env``: extra environment variables for the minion (and so for everything it runs).
    ``stop_timeout``: seconds a process of the instance gets between SIGTERM and SIGKILL when the instance
    stops or reboots (salt-minion itself needs 5-10 s to exit on SIGTERM; a terminated instance need not
    wait for it).
    ``boot_timeout``: seconds the boot (init, then boot scripts) may take.
    """

    def __init__(self, base_dir: str | Path, master_port: int, publish_port: int, *,
                 master: str = "127.0.0.1", minion_config: dict[str, Any] | None = None,
                 loader_dirs: bool = True, env: dict[str, str] | None = None,
                 python: str = sys.executable, stop_timeout: float = 3.0,
                 boot_timeout: float = 120.0) -> None:
        self.base_dir = Path(base_dir)
        self.master = master
        self.master_port = int(master_port)
        self.publish_port = int(publish_port)
        self.minion_config = dict(minion_config or {})
        self.loader_dirs = loader_dirs
        self.env = dict(env or {})
        self.python = python
        self.stop_timeout = stop_timeout
        self.boot_timeout = boot_timeout
        self.token = uuid.uuid4().hex[:12]  # tells this agent's processes from any other run's
        self.cloud: LocalCloud | None = None
        self.instances: dict[str, Instance] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ the agent protocol
    def attach(self, cloud: "LocalCloud") -> None:
        """Called by LocalCloud once it serves: the cloud whose instances this agent runs."""
        self.cloud = cloud

    def start(self, instance_id: str) -> None:
        """First boot of ``instance_id``: fetch its identity, write its minion config, start the minion."""
        if self.cloud is None:
            raise RuntimeError("SaltInstanceAgent.start before LocalCloud attached it: pass the agent to "
                               "LocalCloud(agent=...) and start the cloud")
        private_ip = self.cloud.private_ip(instance_id)
        if not private_ip:
            raise RuntimeError(f"localcloud has no private IP for {instance_id}")
        imds = self.cloud.imds_url(instance_id)
        document = _get(f"{imds}/latest/dynamic/instance-identity/document")
        signature = _get(f"{imds}/latest/dynamic/instance-identity/signature")
        # Unix socket paths must stay under 108 bytes, and Salt prepends root_dir to sock_dir whatever it is:
        # the minion sees its root_dir through a short symlink (a symlink "r" in a short temp dir, pointing at the instance root)
        sock_dir = Path(tempfile.mkdtemp(prefix=f"lc-{instance_id[-8:]}-"))
        inst = Instance(instance_id=instance_id, root=self.base_dir / instance_id, private_ip=private_ip,
                        sock_dir=sock_dir)
        inst.conf_dir.mkdir(parents=True, exist_ok=True)
        inst.boot_dir.mkdir(parents=True, exist_ok=True)
        (sock_dir / "r").symlink_to(inst.root_dir, target_is_directory=True)
        (inst.conf_dir / "minion").write_text(yaml.safe_dump(self._config(inst, document, signature)))
        with self._lock:
            self.instances[instance_id] = inst
        self._boot(inst)

    def stop(self, instance_id: str) -> None:
        """The instance is terminated: end its minion and everything it runs (files stay for inspection).
        The instance counts as running (``running()``) until every process is gone."""
        with self._lock:
            inst = self.instances.get(instance_id)
        if inst is None:
            return
        try:
            self._halt(inst)
        finally:
            shutil.rmtree(inst.sock_dir, ignore_errors=True)
            with self._lock:
                self.instances.pop(instance_id, None)

    # ------------------------------------------------------------------ extra operations
    def reboot(self, instance_id: str) -> None:
        """Restart the instance's processes: end them all, then boot again (same config, keys, files)."""
        inst = self.get(instance_id)
        self._halt(inst)
        self._boot(inst)

    def get(self, instance_id: str) -> Instance:
        """The running instance ``instance_id`` (KeyError naming it when the agent does not run it)."""
        with self._lock:
            inst = self.instances.get(instance_id)
        if inst is None:
            raise KeyError(f"{instance_id} is not running under this agent")
        return inst

    def running(self) -> list[str]:
        """Instance ids the agent runs now."""
        with self._lock:
            return list(self.instances)

    def pids(self, instance_id: str | None = None) -> dict[str, list[int]]:
        """Live processes of each running instance (or of one): its init and all its descendants."""
        from localcloud.instance_init import descendants, parents

        with self._lock:
            chosen = [i for i in self.instances.values() if instance_id is None or i.instance_id == instance_id]
        table = parents()
        found: dict[str, list[int]] = {}
        for inst in chosen:
            if inst.init is not None and inst.init.pid in table:
                found[inst.instance_id] = [inst.init.pid, *descendants(inst.init.pid, table)]
        return found

    def shutdown(self) -> None:
        """Stop every instance (LocalCloud stops each one itself; this is for use without it)."""
        for instance_id in self.running():
            self.stop(instance_id)

    # ------------------------------------------------------------------ internals
    def _config(self, inst: Instance, document: str, signature: str) -> dict[str, Any]:
        config: dict[str, Any] = {
            "id": inst.instance_id,
            "master": self.master,
            "master_port": self.master_port,
            "publish_port": self.publish_port,
            "source_address": inst.private_ip,  # the instance talks from its own address
            # short alias of inst.root_dir; the sockets go to its default var/run/salt/minion
            "root_dir": str(inst.sock_dir / "r"),
            "user": getpass.getuser(),
            "autosign_grains": list(IDENTITY_GRAINS),
            "grains": {
                "phoenix_identity_document": document,
                "phoenix_identity_signature": signature,
                "phoenix_private_ip": inst.private_ip,
            },
            # a new instance's key waits for the master's decision: retry often, not every 10 s
            "acceptance_wait_time": 0.5,  # as templates/phoenix-fleet.yaml's user data
            "acceptance_wait_time_max": 2,
            "random_reauth_delay": 0,
            "log_level_logfile": "info",
        }
        if self.loader_dirs:
            config.update(checkout_loader_dirs())
        config.update(self.minion_config)
        return config

    def _environment(self, inst: Instance) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.env)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
        env[MARKER] = f"{self.token}/{inst.instance_id}"
        env["LOCALCLOUD_BOOT_DIR"] = str(inst.boot_dir)
        env["LOCALCLOUD_STOP_GRACE"] = str(self.stop_timeout)
        return env

    def _boot(self, inst: Instance) -> None:
        """Start the instance's init (minion, then boot scripts) and wait until its boot scripts ran."""
        minion = [self.python, "-c", "import salt.scripts; salt.scripts.salt_minion()",
                  "--config-dir", str(inst.conf_dir), "--log-level", "quiet"]
        before = len(inst.boot_log)
        # /run is a tmpfs on a real machine, empty at every boot. A pidfile the last boot left behind names a
        # process that is gone, or a zombie of it that nobody reaps here (its init exited first): Salt counts
        # a zombie as running, and the new salt-minion said "An instance is already running" and exited.
        for stale in (inst.root_dir / "var" / "run").glob("*.pid"):
            stale.unlink(missing_ok=True)
        with open(inst.console, "ab") as console:
            inst.init = subprocess.Popen(
                [self.python, str(INIT_SCRIPT), str(inst.boot_dir), "--", *minion],
                stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
                env=self._environment(inst), start_new_session=True)
        inst.boots += 1
        deadline = time.monotonic() + self.boot_timeout
        while "boot: done" not in inst.boot_log[before:]:
            if inst.init.poll() is not None:
                raise RuntimeError(f"instance {inst.instance_id}'s init exited ({inst.init.returncode}) while "
                                   f"booting: see {inst.console}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"instance {inst.instance_id} did not boot in {self.boot_timeout} s: "
                                   f"see {inst.console}")
            time.sleep(0.05)
        failed = [line for line in inst.boot_log[before:] if "->" in line and not line.endswith("-> 0")]
        if failed:
            log.warning("instance %s: boot scripts failed: %s (see %s)", inst.instance_id, failed, inst.console)
        log.info("instance %s booted (%s, boot %d): init pid %d", inst.instance_id, inst.private_ip,
                 inst.boots, inst.init.pid)

    def _halt(self, inst: Instance) -> None:
        """Stop the init, which ends every process of the instance; SIGKILL what is left after
        ``stop_timeout``. Returns once every process the instance had is gone (the init's own exit does not
        wait for them)."""
        init = inst.init
        if init is None or init.poll() is not None:
            return
        tree = self.pids(inst.instance_id).get(inst.instance_id, [])
        init.terminate()
        try:
            init.wait(self.stop_timeout * 2 + 5)
        except subprocess.TimeoutExpired:
            init.kill()
            init.wait(5)
        left = _wait_gone(tree, self.stop_timeout + 2)
        if left:
            log.error("instance %s: processes survived its halt and were killed: %s", inst.instance_id, left)
        else:
            log.info("instance %s halted: no process left", inst.instance_id)

    def remove_files(self, instance_id: str) -> None:
        """Delete a stopped instance's files (tests usually keep them to search for secrets)."""
        with self._lock:
            if instance_id in self.instances:
                raise RuntimeError(f"{instance_id} is still running")
        shutil.rmtree(self.base_dir / instance_id, ignore_errors=True)


def _get(url: str, timeout: float = 10.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read().decode()


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    """Wait until none of ``pids`` is alive; SIGKILL those left at the deadline and return them."""
    from localcloud.instance_init import alive

    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids):
        if time.monotonic() >= deadline:
            left = [p for p in pids if alive(p)]
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            return left
        time.sleep(0.05)
    return []
