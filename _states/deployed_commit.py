"""Deploy exactly the commit recorded in S3 and record it.

.. code-block:: yaml

    app-at-recorded-commit:
      deployed_commit.deployed: []      # SHA from s3://phoenix:deploy:bucket/phoenix:deploy:key

    app-at-a-given-commit:
      deployed_commit.deployed:
        - commit: 0123456789abcdef0123456789abcdef01234567

The token that fetches the repository is read by the execution module from pillar
(``phoenix:deploy:token_secret``); never pass it to this state. The state's changes show commits only.
"""

from __future__ import annotations

from typing import Any

from salt.exceptions import CommandExecutionError, SaltInvocationError

__virtualname__ = "deployed_commit"


def __virtual__():
    if "deployed_commit.deploy" in __salt__:
        return __virtualname__
    return (False, "deployed_commit state: the deployed_commit execution module is not available")


def deployed(name: str, commit: str | None = None, **kwargs: Any) -> dict[str, Any]:
    """
    Ensure the checkout (``phoenix:deploy:target``) is at ``commit`` (default: the SHA in S3) and recorded.

    name
        A label.
    commit
        A full SHA; default: read from ``s3://<phoenix:deploy:bucket>/<phoenix:deploy:key>``.

    Other ``phoenix:deploy`` settings (``repository``, ``target``, ``record``, ``bucket``, ``key``) may be
    given as arguments, never the token.
    """
    ret: dict[str, Any] = {"name": name, "result": False, "changes": {}, "comment": ""}
    kwargs = {k: v for k, v in kwargs.items() if not k.startswith("__")}
    if any(k in kwargs for k in ("token", "token_value", "password")):
        ret["comment"] = ("deployed_commit.deployed takes no token: set phoenix:deploy:token_secret to the name "
                          "of an SSM reference under phoenix:secrets:ssm")
        return ret
    test = bool(__opts__.get("test", False))
    try:
        out = __salt__["deployed_commit.deploy"](commit=commit, test=test, **kwargs)
    except (CommandExecutionError, SaltInvocationError) as exc:
        ret["comment"] = str(exc)
        return ret
    where = f"{out['target']} ({out['source']})"
    if not out["changed"]:
        ret["result"] = True
        ret["comment"] = f"{where} is already at {out['commit']}."
        return ret
    ret["changes"] = {"commit": {"old": out["old"], "new": out["commit"]}}
    if test:
        ret["result"] = None
        ret["comment"] = f"{where} would be checked out at {out['commit']} (now {out['old'] or 'nothing'})."
        return ret
    ret["result"] = True
    ret["comment"] = f"{where} is now at {out['commit']} (was {out['old'] or 'nothing'}); recorded in {out['record']}."
    return ret
