"""A running Phoenix system on one machine, for the demo and the fleet benchmarks (and the bench of
provisioning): localcloud, a standalone salt-master started from the documented master config, localcloud
instances that are real salt-minions, optionally the NGINX that plays the load balancer, a collector on the
master's event bus, and a clean stop of every process it started (also on errors and Ctrl-C).

    with PhoenixSystem(root) as system:               # localcloud + the instance agent; master ports chosen
        ...                                           # create the queue / stack / group (instances may boot)
        system.start_master(queue_url, groups=["web-*"], phoenix={...}, pillar={...})
        system.bus.wait("phoenix/lifecycle/continued/*")
        system.salt_run("state.orchestrate", "orch.rebuild", "pillar={...}")

No pytest, no salt-factories: the master is ``salt-master --config-dir <root>/master/conf`` whose config is
``conf/master.d/phoenix-lifecycle.conf`` as shipped plus only what this machine adds (paths, ports, the
localcloud endpoint, the queue). Its ``file_roots`` hold ``<checkout>/salt`` and a folder of symlinks to the
loader folders (``_modules``, ``_states``, ``_utils``) and ``reactor``: never the whole checkout (Salt's
fileserver would list ``.venv`` and ``.git``, and every highstate's module sync would take a minute).
"""

from __future__ import annotations

import fnmatch
import getpass
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml

from devtools.nginx import free_port

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf" / "master.d" / "phoenix-lifecycle.conf"
SECRETS_CONF = REPO / "conf" / "master.d" / "phoenix-secrets.conf"
LAUNCHING = "autoscaling:EC2_INSTANCE_LAUNCHING"
TERMINATING = "autoscaling:EC2_INSTANCE_TERMINATING"
AMI = "ami-12c6146b"
CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
#: what a minion syncs at the start of a highstate, and the reactor SLS the master config names
LOADER_LINKS = ("_modules", "_states", "_utils", "reactor")

#: phoenix:webapp for an instance on a shared machine: each instance is a salt-minion on its own loopback
#: address, and nothing may touch the host's packages, users, systemd or /etc
WEBAPP_PILLAR: dict[str, Any] = {"phoenix": {"webapp": {
    "under_root_dir": True, "manage_packages": False, "manage_user": False, "virtualenv": False,
    "service_manager": "script", "port": 8080, "app_port": 8000, "nginx": {"main_config": True}}}}


# ---------------------------------------------------------------------------------------------- config
def documented_config() -> dict[str, Any]:
    """The master config file exactly as shipped."""
    return yaml.safe_load(CONF.read_text())


def loader_roots(dest: Path) -> Path:
    """A folder of symlinks to the checkout's loader folders and reactor SLS (for ``file_roots``)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in LOADER_LINKS:
        link = dest / name
        if not link.is_symlink():
            link.symlink_to(REPO / name)
    return dest


def master_overrides(endpoint: str, queue_url: str, certificate: Path, pillar_root: Path,
                     lifecycle: dict[str, Any] | None = None, extra_roots: list[str] | None = None,
                     loader_root: Path | None = None, groups: list[str] | None = None) -> dict[str, Any]:
    """The documented config plus what only this machine knows (endpoint, queue, certificate, paths).

    ``file_roots`` is ``<checkout>/salt``, ``loader_root`` (see :func:`loader_roots`) and ``extra_roots``."""
    config = documented_config()
    phoenix = config.pop("phoenix")
    phoenix["aws"] = {"endpoint_url": endpoint, "region": "us-east-1", "max_attempts": 2}
    phoenix["lifecycle"].update({"queue_url": queue_url, "groups": groups or ["lc-*"],
                                 "identity_certificate": str(certificate), "wait_seconds": 1, "key_timeout": 60,
                                 "highstate_timeout": 120, "health_timeout": 15, "health": {"port": 8080}})
    phoenix["lifecycle"].update(lifecycle or {})
    # rebuild.cycle's instance refresh on a group of 3: keep 2 in service, replace one at a time
    phoenix["rebuild"] = {"min_healthy_percentage": 60}
    roots = [str(REPO / "salt"), *([str(loader_root)] if loader_root else []), *(extra_roots or [])]
    config.update({
        "phoenix": phoenix,
        "interface": "127.0.0.1",
        "log_level_logfile": "info",
        "file_roots": {"base": roots},
        "pillar_roots": {"base": [str(pillar_root)]},
        "runner_dirs": [str(REPO / "_runners")],
        "engines_dirs": [str(REPO / "_engines")],
        "module_dirs": [str(REPO / "_modules")],
        "states_dirs": [str(REPO / "_states")],
        "utils_dirs": [str(REPO / "_utils")],
    })
    return config


def standalone(config: dict[str, Any], root: Path, ports: dict[str, int], master_id: str) -> dict[str, Any]:
    """``config`` for a salt-master of its own under ``root`` (no salt-factories): every path below it,
    every port its own (the internal TCP ports default to 4512-4515, which another master may hold)."""
    config = dict(config)
    config.update({"id": master_id, "root_dir": str(root), "pki_dir": "pki", "cachedir": "cache",
                   "sock_dir": "run/master", "pidfile": "run/master.pid", "log_file": "logs/master.log",
                   "key_logfile": "logs/key.log", "user": getpass.getuser(), **ports})
    return config


# ---------------------------------------------------------------------------------------------- AWS helpers
def make_group(aws: dict[str, Any], name: str, queue_arn: str, desired: int = 1, heartbeat: int = 300,
               terminating: bool = True, max_size: int = 6) -> None:
    """An Auto Scaling group with Phoenix's hooks (LAUNCHING, DefaultResult ABANDON; TERMINATING), then
    ``desired`` instances (hooks apply to instances launched after them)."""
    aws["ec2"].create_launch_template(LaunchTemplateName=f"{name}-lt",
                                      LaunchTemplateData={"ImageId": AMI, "InstanceType": "t3.micro"})
    aws["autoscaling"].create_auto_scaling_group(
        AutoScalingGroupName=name, MinSize=0, MaxSize=max_size, DesiredCapacity=0,
        LaunchTemplate={"LaunchTemplateName": f"{name}-lt", "Version": "$Latest"}, AvailabilityZones=["us-east-1a"])
    hooks = [("provision", LAUNCHING, "ABANDON")] + ([("retire", TERMINATING, "CONTINUE")] if terminating else [])
    for hook, transition, default in hooks:
        aws["autoscaling"].put_lifecycle_hook(
            AutoScalingGroupName=name, LifecycleHookName=hook, LifecycleTransition=transition,
            NotificationTargetARN=queue_arn, RoleARN="arn:aws:iam::123456789012:role/hooks",
            HeartbeatTimeout=heartbeat, DefaultResult=default)
    if desired:
        aws["autoscaling"].set_desired_capacity(AutoScalingGroupName=name, DesiredCapacity=desired)


def instances(aws: dict[str, Any], group: str) -> dict[str, str]:
    """``{instance id: LifecycleState}`` of the group."""
    found = aws["autoscaling"].describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"]
    return {i["InstanceId"]: i["LifecycleState"] for i in found[0]["Instances"]} if found else {}


def wait_in_service(aws: dict[str, Any], group: str, count: int, timeout: float = 120) -> dict[str, str]:
    """Block until ``count`` instances of ``group`` are InService; returns them."""
    from localcloud.testing import wait_until

    def done() -> dict[str, str] | None:
        now = instances(aws, group)
        ready = {i: s for i, s in now.items() if s == "InService"}
        return ready if len(ready) >= count else None

    return wait_until(done, timeout=timeout, interval=0.3, message=f"{count} InService in {group}")


# ---------------------------------------------------------------------------------------------- processes
def tree(pid: int) -> list[int]:
    """``pid`` and its live descendants."""
    from localcloud.instance_init import descendants, parents

    table = parents()
    return [pid, *descendants(pid, table)] if pid in table else []


def memory(pids: Iterable[int]) -> dict[str, int]:
    """``{"rss": bytes, "pss": bytes, "processes": n}`` summed over ``pids`` (``/proc/<pid>/smaps_rollup``;
    PSS shares each page among the processes that map it, so it adds up across process trees)."""
    rss = pss = count = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        count += 1
        for line in text.splitlines():
            key, _, value = line.partition(":")
            if key == "Rss":
                rss += int(value.split()[0]) * 1024
            elif key == "Pss":
                pss += int(value.split()[0]) * 1024
    return {"rss": rss, "pss": pss, "processes": count}


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU seconds the live ``pids`` have used (``/proc/<pid>/stat``)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[-1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / ticks


# ---------------------------------------------------------------------------------------------- event bus
class Bus:
    """Every master event with its arrival time (a thread on the master's event bus), and callbacks."""

    def __init__(self, opts: dict[str, Any]) -> None:
        import salt.utils.event

        self.events: list[tuple[float, str, dict[str, Any]]] = []
        self.listeners: list[Callable[[float, str, dict[str, Any]], None]] = []
        self._stop = threading.Event()
        self._bus = salt.utils.event.get_master_event(opts, opts["sock_dir"], listen=True)
        self._thread = threading.Thread(target=self._run, name="phoenix-bus", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                event = self._bus.get_event(wait=0.5, full=True)
            except Exception:  # the master went away: stop quietly
                if self._stop.is_set():
                    return
                time.sleep(0.5)
                continue
            if not event:
                continue
            item = (time.time(), event["tag"], event.get("data") or {})
            self.events.append(item)
            for listener in list(self.listeners):
                try:
                    listener(*item)
                except Exception as exc:  # a display error must not stop the collection
                    print(f"(event display failed: {exc})", file=sys.stderr)

    def matching(self, pattern: str, after: float = 0.0, where: Callable[[dict[str, Any]], bool] = lambda d: True
                 ) -> list[tuple[float, str, dict[str, Any]]]:
        """Events whose tag matches the shell ``pattern``, received after ``after`` (epoch seconds)."""
        return [e for e in list(self.events) if e[0] >= after and fnmatch.fnmatchcase(e[1], pattern) and where(e[2])]

    def first(self, tag: str, where: Callable[[dict[str, Any]], bool] = lambda d: True
              ) -> tuple[float, dict[str, Any]] | None:
        """The first event with exactly ``tag``: ``(arrival time, data)``."""
        for at, t, data in list(self.events):
            if t == tag and where(data):
                return at, data
        return None

    def wait(self, pattern: str, after: float = 0.0, timeout: float = 120.0,
             where: Callable[[dict[str, Any]], bool] = lambda d: True) -> tuple[float, str, dict[str, Any]]:
        """Block until an event matches; AssertionError after ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.matching(pattern, after, where)
            if found:
                return found[0]
            time.sleep(0.1)
        raise AssertionError(f"no event {pattern} within {timeout} s")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        try:
            self._bus.destroy()
        except Exception:
            pass


# ---------------------------------------------------------------------------------------------- the system
class PhoenixSystem:
    """localcloud + the instance agent + (after :meth:`start_master`) a salt-master and its event bus,
    and optionally the NGINX load balancer (:meth:`start_load_balancer`). Every process it starts, it stops
    in :meth:`stop` (called by ``__exit__``; SIGTERM and SIGINT end the run through it too).

    ``root`` holds everything the run writes: ``master/`` (config, pki, cache, ``logs/master.log``),
    ``instances/<id>/`` (each minion's files and ``console.log``), ``alb/`` (the load balancer's NGINX).
    """

    def __init__(self, root: Path, *, boot_seconds: float = 0.5, clock_rate: float = 1.0,
                 minion_config: dict[str, Any] | None = None, master_id: str = "phoenix-master") -> None:
        from localcloud.salt_instance import SaltInstanceAgent

        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.master_id = master_id
        self.boot_seconds, self.clock_rate = boot_seconds, clock_rate
        for key, value in CREDS.items():  # the daemons inherit the environment: dummy credentials
            os.environ.setdefault(key, value)
        os.environ["PYTHONPATH"] = os.pathsep.join(
            [str(REPO / "_utils"), str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
        # the master's ports are known before it starts: instances a stack launches at once can boot
        # (and retry their first contact) while the master comes up
        self.ports = {"publish_port": free_port(), "ret_port": free_port(), "tcp_master_pub_port": free_port(),
                      "tcp_master_pull_port": free_port(), "tcp_master_publish_pull": free_port(),
                      "tcp_master_workers": free_port()}
        self.agent = SaltInstanceAgent(self.root / "instances", master_port=self.ports["ret_port"],
                                       publish_port=self.ports["publish_port"], minion_config=minion_config)
        self.cloud: Any = None
        self.master: subprocess.Popen[bytes] | None = None
        self.conf_dir = self.root / "master" / "conf"
        self.opts: dict[str, Any] = {}
        self.bus: Bus | None = None
        self._runner: Any = None
        self.alb: Any = None
        #: more things to stop (first), e.g. a git server the run started
        self.on_stop: list[Callable[[], Any]] = []
        self._previous_handlers: dict[int, Any] = {}

    # ------------------------------------------------------------------ start
    def __enter__(self) -> "PhoenixSystem":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> "PhoenixSystem":
        """Start localcloud (with the instance agent); SIGTERM then ends the run cleanly."""
        from localcloud import LocalCloud

        for sig in (signal.SIGTERM, signal.SIGHUP):
            self._previous_handlers[sig] = signal.signal(sig, _raise_interrupt)
        self.cloud = LocalCloud(boot_seconds=self.boot_seconds, clock_rate=self.clock_rate, agent=self.agent)
        self.cloud.start()
        return self

    def client(self, service: str) -> Any:
        """A boto3 client of localcloud."""
        from localcloud.testing import client

        return client(self.cloud.endpoint, service)

    @property
    def log_file(self) -> Path:
        return self.root / "master" / "logs" / "master.log"

    def start_master(self, queue_url: str, *, groups: list[str], lifecycle: dict[str, Any] | None = None,
                     phoenix: dict[str, Any] | None = None, pillar: dict[str, Any] | None = None,
                     states: dict[str, str] | None = None, secrets: bool = False,
                     extra: dict[str, Any] | None = None, timeout: float = 180) -> dict[str, Any]:
        """Write the master config and start the salt-master; returns its opts once its engine runs.

        ``pillar``: pillar files (``{"top.sls": text or mapping, "webapp.sls": mapping, ...}``);
        ``states``: extra SLS files in a state root of this run (e.g. ``{"top.sls": ...}``);
        ``phoenix``: merged into the master's ``phoenix`` settings; ``secrets``: add
        ``conf/master.d/phoenix-secrets.conf`` (the SSM ext_pillar and its cache settings);
        ``extra``: any other master settings."""
        import salt.config

        from localcloud.testing import wait_until

        base = self.root / "master"
        certificate = base / "identity.pem"
        base.mkdir(parents=True, exist_ok=True)
        certificate.write_text(self.cloud.identity_certificate_pem)
        pillar_root = _write_files(base / "pillar", pillar or {"top.sls": "base: {}\n"})
        roots = [str(_write_files(base / "states", states))] if states else []
        config = master_overrides(self.cloud.endpoint, queue_url, certificate, pillar_root, lifecycle=lifecycle,
                                  extra_roots=roots, loader_root=loader_roots(base / "loader_roots"), groups=groups)
        if secrets:
            config.update(yaml.safe_load(SECRETS_CONF.read_text()))
            config["pillar_dirs"] = [str(REPO / "_pillar")]
        _merge(config["phoenix"], phoenix or {})
        config.update(extra or {})
        config = standalone(config, base, self.ports, self.master_id)
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        (self.conf_dir / "master").write_text(yaml.safe_dump(config))
        self.master = subprocess.Popen(
            [sys.executable, "-c", "import salt.scripts; salt.scripts.salt_master()", "--config-dir",
             str(self.conf_dir), "--log-level", "quiet"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.opts = salt.config.master_config(str(self.conf_dir / "master"))

        def up() -> bool:
            if self.master is not None and self.master.poll() is not None:
                raise RuntimeError(f"salt-master exited ({self.master.returncode}): see {self.log_file}")
            return os.path.exists(os.path.join(self.opts["sock_dir"], "master_event_pub.ipc"))

        wait_until(up, timeout=timeout, interval=0.3, message="the master's event bus")
        self.bus = Bus(self.opts)
        wait_until(self.ledger_path.exists, timeout=timeout, interval=0.3, message="the lifecycle engine's ledger")
        return self.opts

    @property
    def ledger_path(self) -> Path:
        return Path(self.opts["cachedir"]) / "phoenix" / "lifecycle.sqlite"

    def start_load_balancer(self, target_group_arn: str) -> Any:
        """The NGINX on 127.0.0.1 that plays the ALB, following ``target_group_arn`` (devtools.alb)."""
        from devtools.alb import LoadBalancer

        self.alb = LoadBalancer(self.root / "alb", self.cloud.endpoint, target_group_arn).start()
        return self.alb

    # ------------------------------------------------------------------ use
    def salt_run(self, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
        """``salt-run --out json <args>`` against this master (its output as text, JSON on stdout)."""
        return subprocess.run(
            [sys.executable, "-c", "import salt.scripts; salt.scripts.salt_run()", "--config-dir",
             str(self.conf_dir), "--out", "json", "--log-level", "quiet", *args],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)

    def salt_run_json(self, *args: str, timeout: float = 300) -> Any:
        """:meth:`salt_run`'s decoded output; RuntimeError naming the command when it fails."""
        done = self.salt_run(*args, timeout=timeout)
        try:
            return json.loads(done.stdout)
        except ValueError:
            raise RuntimeError(f"salt-run {' '.join(args)} failed ({done.returncode}): "
                               f"{(done.stderr or done.stdout).strip()[-2000:]}") from None

    def runner(self, fun: str, *args: str) -> Any:
        """A runner function through Salt's RunnerClient in this process: what ``salt-run <fun> <args>``
        does, without starting an interpreter each time (seconds on a loaded machine)."""
        import salt.runner

        if self._runner is None:
            self._runner = salt.runner.RunnerClient(self.opts)
        return self._runner.cmd(fun, list(args), print_event=False)

    def master_pids(self) -> list[int]:
        """The salt-master and every process it forked (workers, reactor, engine, ...)."""
        return tree(self.master.pid) if self.master is not None and self.master.poll() is None else []

    def instance_pids(self, instance_id: str | None = None) -> dict[str, list[int]]:
        """Each running instance's processes (init, minion, NGINX, app)."""
        return self.agent.pids(instance_id)

    def leftovers(self) -> dict[str, Any]:
        """Processes this run started that are still alive (empty after :meth:`stop`)."""
        left: dict[str, Any] = {}
        if self.master is not None and self.master.poll() is None:
            left["master"] = self.master_pids()
        if self.agent.pids():
            left["instances"] = self.agent.pids()
        if self.alb is not None and self.alb.nginx.proc is not None and self.alb.nginx.proc.poll() is None:
            left["alb"] = [self.alb.nginx.proc.pid]
        return left

    # ------------------------------------------------------------------ stop
    def stop(self) -> None:
        """Stop the load balancer, the event bus, the master, localcloud and every instance."""
        errors: list[str] = []
        while self.on_stop:
            _try(self.on_stop.pop(), errors)
        if self.alb is not None:
            _try(self.alb.stop, errors)
        if self.bus is not None:
            _try(self.bus.close, errors)
            self.bus = None
        if self.master is not None:
            _try(lambda: _stop_group(self.master), errors)
        if self.cloud is not None:
            _try(self.cloud.stop, errors)  # stops every instance agent (minion, NGINX, app)
            self.cloud = None
        for sig, handler in self._previous_handlers.items():
            signal.signal(sig, handler)
        self._previous_handlers.clear()
        if errors:
            print("stopping: " + "; ".join(errors), file=sys.stderr)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _try(action: Callable[[], Any], errors: list[str]) -> None:
    try:
        action()
    except Exception as exc:
        errors.append(f"{type(exc).__name__}: {exc}")


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group of ``proc`` (a salt-master and its workers), SIGKILL after 30 s."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            pass
    try:  # workers that outlive the main process (same group)
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if proc.poll() is None:
        proc.wait(10)


def _merge(into: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def _write_files(root: Path, files: dict[str, Any]) -> Path:
    """Write ``{relative path: text or mapping (as YAML)}`` under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False))
    return root


# ---------------------------------------------------------------------------------------------- the web fleet
TEMPLATE = REPO / "templates" / "phoenix-fleet.yaml"
STACK_POLICY = REPO / "templates" / "phoenix-fleet.stack-policy.json"


def stack_parameters(ec2: Any, instances: int, batch: int, now: str, deregistration_delay: int = 5,
                     heartbeat: int = 600, bucket: str = "phoenix-artifacts") -> list[dict[str, str]]:
    """Parameters of templates/phoenix-fleet.yaml for localcloud: ``instances`` kept in service during a
    rolling update of ``batch`` at a time, the instances' NGINX on 8080, a short deregistration delay."""
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    subnets = ",".join(s["SubnetId"] for s in ec2.describe_subnets(
        Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"][:2])
    values = {"RebuildTimestamp": now, "ImageId": AMI, "InstanceType": "t3.small",
              "MinSize": str(instances), "MaxSize": str(instances + batch), "DesiredCapacity": str(instances),
              "RollingMaxBatchSize": str(batch), "RollingMinInstancesInService": str(instances),
              "MaxInstanceLifetime": "172800", "AppPort": "8080", "HealthCheckPath": "/health",
              "SaltMaster": "127.0.0.1", "SaltVersion": "3008", "HookHeartbeatTimeout": str(heartbeat),
              "RetireHeartbeatTimeout": "300", "VpcId": vpc, "InstanceSubnetIds": subnets,
              "LoadBalancerSubnetIds": subnets, "ClientCidr": "127.0.0.0/8", "SaltMasterCidr": "127.0.0.1/32",
              "DeregistrationDelay": str(deregistration_delay), "ArtifactBucket": bucket,
              "ArtifactPrefix": "phoenix/"}
    return [{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()]


def web_fleet(system: PhoenixSystem, *, instances: int, batch: int, secret: str, stack: str = "web",
              deregistration_delay: int = 5, highstate_timeout: int = 300) -> dict[str, Any]:
    """The production stack (templates/phoenix-fleet.yaml) of ``instances`` on ``system``'s localcloud, and
    its salt-master: what the demo and the fleet benchmark run.

    The release: a git repository that only ``secret`` opens (devtools.gitserver, an SSM SecureString
    under /phoenix/), its commit in S3. The instances' highstate: OS updates (a harmless stand-in for apt),
    the deployed commit fetched with the secret, the web role (the sample Flask app with the Werkzeug
    debugger ON behind its own NGINX with the allowlist). The master: the documented configs
    (phoenix-lifecycle.conf + phoenix-secrets.conf), the group, the stack's queue and runtime profile.
    The stack is created first (its instances boot and wait in Pending:Wait), then the master starts.
    Returns ``{"stack", "group", "outputs", "git", "commit"}``."""
    from datetime import datetime, timezone

    from devtools.gitserver import GitServer, make_repository

    cloud = system.cloud
    aws = {n: system.client(n) for n in ("cloudformation", "ec2", "ssm", "s3")}
    param, bucket, key = f"/phoenix/{stack}/deploy-token", "phoenix-artifacts", f"phoenix/{stack}/deployed-commit"
    git_root = system.root / "git"
    _, sha = make_repository(git_root, "app.git", {"README": "the application source\n"})
    git = GitServer(git_root, secret).start()
    system.on_stop.append(git.stop)
    aws["ssm"].put_parameter(Name=param, Value=secret, Type="SecureString")
    aws["s3"].create_bucket(Bucket=bucket)
    aws["s3"].put_object(Bucket=bucket, Key=key, Body=sha.encode())
    now = datetime.fromtimestamp(cloud.clock.now(), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    aws["cloudformation"].create_stack(
        StackName=stack, TemplateBody=TEMPLATE.read_text(), Capabilities=["CAPABILITY_IAM"],
        Parameters=stack_parameters(aws["ec2"], instances, batch, now, deregistration_delay, bucket=bucket),
        StackPolicyBody=STACK_POLICY.read_text())
    out = {o["OutputKey"]: o["OutputValue"] for o in
           aws["cloudformation"].describe_stacks(StackName=stack)["Stacks"][0]["Outputs"]}
    group = out["GroupName"]
    system.start_master(
        out["HookQueueUrl"], groups=[group], secrets=True,
        lifecycle={"highstate_timeout": highstate_timeout, "health_timeout": 60, "key_timeout": 120},
        phoenix={"profile": {"runtime": out["RuntimeInstanceProfileArn"], "verify_timeout": 10},
                 "rebuild": {"min_healthy_percentage": 100}},
        states={"top.sls": {"base": {"i-*": ["os_updates", "deployed_commit", "webapp"]}}},
        pillar={"top.sls": {"base": {"i-*": ["webapp", "phoenix"]}}, "webapp.sls": WEBAPP_PILLAR,
                "phoenix.sls": {"phoenix": {
                    "aws": {"endpoint_url": cloud.endpoint, "region": "us-east-1", "max_attempts": 2},
                    "secrets": {"ssm": {"deploy_token": param}},
                    "deploy": {"bucket": bucket, "key": key, "repository": git.url("app.git"),
                               "target": "srv/app-source", "record": "var/lib/phoenix/deployed_commit.json",
                               "token_secret": "deploy_token"},
                    # the harmless stand-in for apt on a shared machine (python -m devtools.fake_upgrade)
                    "os_updates": {"commands": [[sys.executable, "-m", "devtools.fake_upgrade",
                                                 "{root_dir}/run/reboot-required"]],
                                   "reboot_flag": "run/reboot-required"}}}})
    return {"stack": stack, "group": group, "outputs": out, "git": git, "commit": sha}


def rebuild_status(system: PhoenixSystem, stack: str) -> dict[str, Any]:
    """``salt-run salt.cmd rebuild.status stack=<stack>`` on the system's master (RunnerClient)."""
    return system.runner("salt.cmd", "rebuild.status", f"stack={stack}")
