"""Stack policy analysis: may a rebuild change only the group and its launch template/configuration?

AWS semantics (CloudFormation "Prevent updates to stack resources"):

* no stack policy: every update is allowed;
* with a policy: an update is allowed only when an ``Allow`` statement matches and no ``Deny`` does;
* a statement matches on ``Action``/``NotAction`` (``Update:Modify``, ``Update:Replace``,
  ``Update:Delete``, ``Update:*``), ``Resource``/``NotResource`` (``LogicalResourceId/<id>``, ``*``
  wildcards) and an optional ``Condition`` on ``ResourceType`` (StringEquals/StringLike).

The rebuild wants: the group and its launch resources may be modified (``Update:Modify``); nothing
else may be updated at all. :func:`analyse` reports what is wrong and which statements cause it;
:func:`recommended` is the policy that satisfies the check.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass, field
from typing import Any, Iterable

UPDATE_ACTIONS = ("Update:Modify", "Update:Replace", "Update:Delete")


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _match_any(patterns: Iterable[str], value: str) -> bool:
    return any(fnmatch.fnmatchcase(value, str(p)) for p in patterns)


def _action_matches(statement: dict[str, Any], action: str) -> bool:
    if "NotAction" in statement:
        return not _match_any(_as_list(statement["NotAction"]), action)
    return _match_any(_as_list(statement.get("Action")), action)


def _resource_matches(statement: dict[str, Any], logical_id: str, rtype: str) -> bool:
    name = f"LogicalResourceId/{logical_id}"
    if "NotResource" in statement:
        hit = not _match_any(_as_list(statement["NotResource"]), name)
    else:
        hit = _match_any(_as_list(statement.get("Resource")), name)
    if not hit:
        return False
    cond = statement.get("Condition") or {}
    for op, clauses in cond.items():
        for key, values in (clauses or {}).items():
            if key != "ResourceType":
                continue
            values = _as_list(values)
            if op == "StringEquals" and rtype not in values:
                return False
            if op == "StringLike" and not _match_any(values, rtype):
                return False
            if op == "StringNotEquals" and rtype in values:
                return False
            if op == "StringNotLike" and _match_any(values, rtype):
                return False
    return True


def allowed(policy: dict[str, Any] | None, logical_id: str, rtype: str, action: str) -> bool:
    """Would ``policy`` let CloudFormation perform ``action`` on this resource?"""
    if policy is None:
        return True
    statements = _as_list(policy.get("Statement"))
    matching = [s for s in statements if _action_matches(s, action) and _resource_matches(s, logical_id, rtype)]
    if any(s.get("Effect") == "Deny" for s in matching):
        return False
    return any(s.get("Effect") == "Allow" for s in matching)


@dataclass
class PolicyReport:
    """Result of :func:`analyse`. ``ok`` is True when the policy allows exactly what a rebuild needs."""

    ok: bool
    problems: list[str] = field(default_factory=list)
    others_updatable: list[str] = field(default_factory=list)
    required_blocked: list[str] = field(default_factory=list)
    offending_statements: list[dict[str, Any]] = field(default_factory=list)
    recommended: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "problems": list(self.problems),
            "others_updatable": list(self.others_updatable),
            "required_blocked": list(self.required_blocked),
            "offending_statements": list(self.offending_statements),
            "recommended": self.recommended,
        }


def recommended(allowed_ids: Iterable[str]) -> dict[str, Any]:
    """The stack policy a rebuild wants: modify the group and its launch resources, nothing else.

    With a stack policy set, everything not explicitly allowed is denied, so one ``Allow`` suffices.
    ``Update:Modify`` only: the rolling update never replaces or deletes the group itself.
    """
    ids = sorted(dict.fromkeys(allowed_ids))
    return {
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "Update:Modify",
                "Principal": "*",
                "Resource": [f"LogicalResourceId/{i}" for i in ids],
            }
        ]
    }


def parse(body: str | None) -> dict[str, Any] | None:
    """Parse a StackPolicyBody; ``None``/empty means "no policy". Raises ``ValueError`` on bad JSON."""
    if body is None or not str(body).strip():
        return None
    try:
        doc = json.loads(body)
    except json.JSONDecodeError as exc:
        raise ValueError(f"stack policy is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or "Statement" not in doc:
        raise ValueError("stack policy has no Statement list")
    return doc


def analyse(
    policy: dict[str, Any] | None,
    resources: Iterable[tuple[str, str]],
    allowed_ids: Iterable[str],
) -> PolicyReport:
    """Check ``policy`` against the stack's ``resources`` (logical id, type) and the ids a rebuild may change."""
    allowed_set = set(allowed_ids)
    resources = list(resources)
    report = PolicyReport(ok=True, recommended=recommended(allowed_set))
    if policy is None:
        report.ok = False
        others = [lid for lid, _ in resources if lid not in allowed_set]
        report.others_updatable = others
        report.problems.append(
            "the stack has no stack policy, so an update may change every resource"
            + (f" (including {', '.join(others)})" if others else "")
        )
        return report
    types = dict(resources)
    for lid in sorted(allowed_set):
        if not allowed(policy, lid, types.get(lid, ""), "Update:Modify"):
            report.required_blocked.append(lid)
    for lid, rtype in resources:
        if lid in allowed_set:
            continue
        if any(allowed(policy, lid, rtype, a) for a in UPDATE_ACTIONS):
            report.others_updatable.append(lid)
    if report.others_updatable:
        for statement in _as_list(policy.get("Statement")):
            if statement.get("Effect") != "Allow":
                continue
            if any(
                _action_matches(statement, a) and _resource_matches(statement, lid, types.get(lid, ""))
                for lid in report.others_updatable
                for a in UPDATE_ACTIONS
            ):
                report.offending_statements.append(statement)
        report.problems.append(
            "the stack policy lets an update change resources other than the group and its launch "
            f"template/configuration: {', '.join(report.others_updatable)}"
        )
    if report.required_blocked:
        report.problems.append(
            f"the stack policy does not allow updating {', '.join(report.required_blocked)}, so a rebuild "
            "would be refused by CloudFormation"
        )
    report.ok = not report.problems
    return report
