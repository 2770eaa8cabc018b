"""The deployed commit: which SHA to deploy comes from an S3 object; git deploys exactly that commit.

Data flow::

    s3://<bucket>/<key>  --wanted()-->  SHA  --deploy()-->  <target> checked out at SHA  --record()-->  record file

* The S3 object holds the SHA as text (40 hex digits for SHA-1 repositories, 64 for SHA-256); surrounding
  whitespace is ignored, anything else is refused.
* ``deploy`` fetches from ``repository`` with git and checks out the SHA detached. A repository that needs
  a credential gets it through the **environment** of the git process only (``GIT_CONFIG_COUNT`` /
  ``GIT_CONFIG_KEY_n`` / ``GIT_CONFIG_VALUE_n`` setting ``http.extraHeader``): never argv, never
  ``.git/config``, never a credential helper; git's tracing variables are removed from that environment
  so the header cannot reach a trace log. A repository URL with credentials in it is refused.
* Every failure is a :class:`~phoenix.provision.errors.ProvisionError` (step ``deployed-commit``) whose
  message is the ABANDON reason; the credential is scrubbed from anything git printed.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import tempfile
import time
import urllib.parse
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from phoenix.provision.errors import ProvisionError, ProvisionInputError

STEP = "deployed-commit"
SHA_RE = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
#: git environment variables that could print the Authorization header or redirect config
_UNSAFE_ENV = re.compile(r"^(GIT_TRACE.*|GIT_CURL_VERBOSE|GIT_TRACE2.*|GIT_CONFIG.*|GIT_ASKPASS|SSH_ASKPASS|"
                         r"GIT_SSH_COMMAND)$")


def _fail(reason: str) -> ProvisionError:
    return ProvisionError(STEP, reason)


def validate_sha(sha: Any, where: str) -> str:
    """``sha`` lower-cased and stripped if it is a full commit id; ProvisionError naming ``where`` otherwise."""
    text = str(sha or "").strip().lower()
    if not SHA_RE.match(text):
        shown = text[:80] + ("..." if len(text) > 80 else "")
        raise _fail(f"{where} does not hold a full commit SHA (40 or 64 hex digits), got {shown!r}: record "
                    "the commit with `salt-run deployed_commit.publish <sha>` (or write the SHA as the object's "
                    "only content)")
    return text


def location(bucket: Any, key: Any) -> tuple[str, str]:
    """``(bucket, key)`` checked; ProvisionInputError naming the pillar keys when either is missing."""
    if not bucket or not key:
        raise ProvisionInputError(STEP, "phoenix:deploy:bucket and phoenix:deploy:key must name the S3 object "
                                        "that holds the commit SHA to deploy: set both in pillar")
    return str(bucket), str(key).lstrip("/")


def wanted(aws: Any, bucket: Any, key: Any) -> str:
    """The SHA recorded in ``s3://bucket/key`` (the commit provisioning must deploy)."""
    from phoenix.aws import PhoenixAWSError

    bucket, key = location(bucket, key)
    where = f"s3://{bucket}/{key}"
    try:
        body = aws.call("s3", "get_object", where, Bucket=bucket, Key=key)["Body"].read(4096)
    except PhoenixAWSError as exc:
        if exc.code in ("NoSuchKey", "404"):
            raise _fail(f"{where} does not exist: record the commit to deploy with "
                        "`salt-run deployed_commit.publish <sha>`") from None
        if exc.code == "NoSuchBucket":
            raise _fail(f"bucket {bucket} does not exist: fix phoenix:deploy:bucket") from None
        raise _fail(f"cannot read {where}: {exc.code or 'error'}: {exc.message} (the instance role needs "
                    "s3:GetObject on it)") from None
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise _fail(f"{where} is not ASCII text: it must hold only the commit SHA") from None
    return validate_sha(text, where)


def publish(aws: Any, bucket: Any, key: Any, sha: str) -> dict[str, str]:
    """Write ``sha`` to ``s3://bucket/key``: the next provisioning deploys it."""
    bucket, key = location(bucket, key)
    sha = validate_sha(sha, "the SHA to publish")
    aws.call("s3", "put_object", f"s3://{bucket}/{key}", Bucket=bucket, Key=key, Body=(sha + "\n").encode(),
             ContentType="text/plain")
    return {"bucket": bucket, "key": key, "commit": sha}


# -- git ---------------------------------------------------------------------------------------------
def check_repository(url: Any) -> str:
    """The repository URL, refused when it carries credentials (they would be on argv and in .git/config)."""
    text = str(url or "").strip()
    if not text:
        raise ProvisionInputError(STEP, "phoenix:deploy:repository is not set: name the git repository to "
                                        "deploy from (https://... or a path)")
    parsed = urllib.parse.urlsplit(text)
    if parsed.scheme in ("http", "https") and (parsed.username or parsed.password):
        raise ProvisionInputError(STEP, "phoenix:deploy:repository must not contain a user or token (it would "
                                        "be visible in process arguments and .git/config): put the token in "
                                        "SSM and name it in phoenix:deploy:token_secret")
    return text


def auth_header(token: str, scheme: str = "bearer", username: str = "x-access-token") -> str:
    """The ``Authorization`` header value for ``token`` (``bearer`` or ``basic`` with ``username``)."""
    if scheme == "bearer":
        return f"Bearer {token}"
    if scheme == "basic":
        return "Basic " + base64.b64encode(f"{username}:{token}".encode()).decode()
    raise ProvisionInputError(STEP, f"phoenix:deploy:auth_scheme must be bearer or basic, got {scheme!r}")


def git_env(header: str | None, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for git: no prompts, no tracing, no system/global config, the header if any."""
    env = {k: v for k, v in (os.environ if base is None else base).items() if not _UNSAFE_ENV.match(k)}
    env.update(GIT_TERMINAL_PROMPT="0", GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, LC_ALL="C")
    pairs = [("credential.helper", ""), ("advice.detachedHead", "false")]
    if header:
        pairs.append(("http.extraHeader", f"Authorization: {header}"))
    env["GIT_CONFIG_COUNT"] = str(len(pairs))
    for n, (key, value) in enumerate(pairs):
        env[f"GIT_CONFIG_KEY_{n}"] = key
        env[f"GIT_CONFIG_VALUE_{n}"] = value
    return env


class Git:
    """Runs git in ``target`` with a fixed environment; output is scrubbed of ``secret`` before it is shown."""

    def __init__(self, target: Path, env: dict[str, str], secret: str | None, git: str = "git",
                 timeout: float = 300.0) -> None:
        self.target, self.env, self.secret, self.git, self.timeout = target, env, secret, git, timeout
        self.commands = 0

    def scrub(self, text: str) -> str:
        if self.secret:
            text = text.replace(self.secret, "***")
            text = text.replace(base64.b64encode(self.secret.encode()).decode(), "***")
        return text

    def run(self, *args: str, check: bool = True, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        self.commands += 1
        try:
            proc = subprocess.run([self.git, *args], cwd=str(cwd or self.target), env=self.env, text=True,
                                  capture_output=True, timeout=self.timeout, stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            raise _fail(f"git is not installed ({self.git} not found): install git on the instance") from None
        except subprocess.TimeoutExpired:
            raise _fail(f"git {args[0]} took longer than {self.timeout:.0f} s") from None
        if check and proc.returncode != 0:
            out = self.scrub((proc.stderr or proc.stdout).strip()).splitlines()
            raise _fail(f"git {args[0]} failed ({proc.returncode}): {' / '.join(out[-3:]) or 'no output'}")
        return proc


def head(target: Any, git: str = "git") -> str | None:
    """The commit checked out in ``target`` (None when it is not a git checkout)."""
    path = Path(str(target))
    if not (path / ".git").exists():
        return None
    proc = subprocess.run([git, "rev-parse", "--verify", "-q", "HEAD"], cwd=str(path), capture_output=True,
                          text=True, env=git_env(None), stdin=subprocess.DEVNULL)
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def deploy(repository: Any, target: Any, sha: str, token: str | None = None, *, auth_scheme: str = "bearer",
           username: str = "x-access-token", git: str = "git", timeout: float = 300.0) -> dict[str, Any]:
    """Make ``target`` a checkout of ``repository`` at exactly ``sha``.

    Returns ``{"old": previous HEAD or None, "new": sha, "fetched": bool}``. Nothing is fetched when the
    commit is already checked out. The token (if any) reaches git only through its environment.
    """
    repository = check_repository(repository)
    sha = validate_sha(sha, "the commit to deploy")
    path = Path(str(target))
    header = auth_header(token, auth_scheme, username) if token else None
    runner = Git(path, git_env(header), token, git, timeout)
    old = head(path, git)
    if old == sha and not _dirty(runner):
        return {"old": old, "new": sha, "fetched": False}
    if not (path / ".git").exists():
        path.mkdir(parents=True, exist_ok=True)
        runner.run("init", "-q", str(path), cwd=path)
    current = runner.run("remote", "get-url", "origin", check=False)
    if current.returncode != 0:
        runner.run("remote", "add", "origin", repository)
    elif current.stdout.strip() != repository:
        runner.run("remote", "set-url", "origin", repository)
    fetched = False
    if not has_commit(path, sha, git):
        fetched = True
        runner.run("fetch", "-q", "--no-tags", "--prune", "origin", "+refs/heads/*:refs/remotes/origin/*")
    if not has_commit(path, sha, git):
        # a commit that no branch reaches may still be fetchable by id (protocol v2 servers allow it)
        runner.run("fetch", "-q", "--no-tags", "origin", sha, check=False)
        if not has_commit(path, sha, git):
            raise _fail(f"commit {sha} is not in {repository}: record a commit that was pushed "
                        "(`salt-run deployed_commit.publish <sha>`)")
    runner.run("checkout", "-q", "--force", "--detach", sha)
    runner.run("reset", "-q", "--hard", sha)
    now = head(path, git)
    if now != sha:
        raise _fail(f"{path} is at {now} after checking out {sha}")
    return {"old": old, "new": sha, "fetched": fetched or old != sha}


def has_commit(target: Any, sha: str, git: str = "git") -> bool:
    """True when the checkout in ``target`` already has the commit ``sha`` (no fetch needed)."""
    path = Path(str(target))
    if not (path / ".git").exists():
        return False
    proc = subprocess.run([git, "cat-file", "-e", f"{sha}^{{commit}}"], cwd=str(path), capture_output=True,
                          env=git_env(None), stdin=subprocess.DEVNULL)
    return proc.returncode == 0


def _dirty(runner: Git) -> bool:
    proc = runner.run("status", "--porcelain", "--untracked-files=no", check=False)
    return proc.returncode != 0 or bool(proc.stdout.strip())


# -- the record ----------------------------------------------------------------------------------------
def read_record(path: Any) -> dict[str, Any] | None:
    """The record written by :func:`record` (None when absent or unreadable)."""
    try:
        data = json.loads(Path(str(path)).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def record(path: Any, commit: str, repository: str, source: str, target: str) -> dict[str, Any]:
    """Write the deployed commit's record atomically (mode 0644); returns what was written."""
    dest = Path(str(path))
    dest.parent.mkdir(parents=True, exist_ok=True)
    data = {"commit": commit, "repository": repository, "source": source, "target": target,
            "deployed_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    fd, tmp = tempfile.mkstemp(dir=str(dest.parent), prefix=f".{dest.name}.")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
            fh.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return data


def elapsed(start: float) -> float:
    return round(time.monotonic() - start, 3)
