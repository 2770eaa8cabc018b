"""Stack policy evaluation, as CloudFormation applies it to an update.

With a policy, an update action on a resource is allowed only when some Allow statement matches it
and no Deny statement does. Without a policy everything is allowed.
"""

from __future__ import annotations

import fnmatch
import json
from typing import Any

from localcloud.awsquery import validation_error


def parse_policy(body: str | None) -> dict[str, Any] | None:
    """The policy document, or None when there is none; ValidationError when it is not JSON."""
    if not body:
        return None
    try:
        policy = json.loads(body)
    except ValueError as exc:
        raise validation_error(f"Stack policy is not valid JSON: {exc}") from None
    if not isinstance(policy, dict) or not isinstance(policy.get("Statement"), (list, dict)):
        raise validation_error("Stack policy must be a JSON object with a Statement list")
    return policy


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _matches_any(patterns: list[Any], value: str) -> bool:
    return any(fnmatch.fnmatchcase(value, str(p)) for p in patterns)


def _statement_matches(statement: dict[str, Any], action: str, logical_id: str, resource_type: str) -> bool:
    resource = f"LogicalResourceId/{logical_id}"
    if "Action" in statement and not _matches_any(_as_list(statement["Action"]), action):
        return False
    if "NotAction" in statement and _matches_any(_as_list(statement["NotAction"]), action):
        return False
    if "Resource" in statement and not _matches_any(_as_list(statement["Resource"]), resource):
        return False
    if "NotResource" in statement and _matches_any(_as_list(statement["NotResource"]), resource):
        return False
    for operator, clause in (statement.get("Condition") or {}).items():
        wanted = _as_list((clause or {}).get("ResourceType"))
        if not wanted:
            continue
        if operator == "StringEquals" and resource_type not in wanted:
            return False
        if operator == "StringLike" and not _matches_any(wanted, resource_type):
            return False
        if operator == "StringNotEquals" and resource_type in wanted:
            return False
        if operator == "StringNotLike" and _matches_any(wanted, resource_type):
            return False
    return True


def denial(policy: dict[str, Any] | None, action: str, logical_id: str, resource_type: str) -> str | None:
    """None when ``action`` (e.g. ``Update:Modify``) on the resource is allowed, else the reason."""
    if policy is None:
        return None
    statements = _as_list(policy.get("Statement"))
    for index, statement in enumerate(statements):
        if statement.get("Effect") == "Deny" and _statement_matches(statement, action, logical_id, resource_type):
            return (f"Action denied by stack policy: Statement [#{index}] has a Deny effect for [{action}] on "
                    f"resource [LogicalResourceId/{logical_id}]")
    if any(s.get("Effect") == "Allow" and _statement_matches(s, action, logical_id, resource_type)
           for s in statements):
        return None
    return (f"Action denied by stack policy: no statement allows [{action}] on resource "
            f"[LogicalResourceId/{logical_id}]")
