"""The secrets window: SSM SecureString references compiled into pillar only while provisioning.

Pillar (from ``pillar_roots``) holds **references**, never values::

    phoenix:
      secrets:
        ssm:
          deploy_token: /phoenix/web/deploy-token     # name -> SSM parameter (SecureString)

:func:`compile_for` returns ``{"phoenix": {"secrets": {"values": {name: value}}}}`` only when all hold:

1. the minion id is an instance id (``^i-[0-9a-f]{8,17}$``);
2. the master's ledger has an **in-flight LAUNCHING** action for it (``Ledger.in_flight``);
3. AWS says the instance is ``Pending:Wait`` **in the ledger action's group** (DescribeAutoScalingInstances);

and ``{}`` otherwise (with a reason for the log and the event, never a value). Nothing is cached: every
pillar compile asks the ledger and AWS again, so the window closes the moment the action is completed.
AWS settings come from the master's config only (never from pillar, which could point the check at
another endpoint).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol

from phoenix.provision.errors import ProvisionError, ProvisionInputError

STEP = "secrets"
INSTANCE_ID = re.compile(r"^i-[0-9a-f]{8,17}$")
NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
SSM_NAME = re.compile(r"^[A-Za-z0-9_./-]{1,2048}$")
LAUNCHING = "autoscaling:EC2_INSTANCE_LAUNCHING"


class LedgerLike(Protocol):  # phoenix.lifecycle.ledger.Ledger
    def in_flight(self, instance_id: str, transition: str = LAUNCHING) -> Any: ...


@dataclass(frozen=True)
class Window:
    """Whether the secrets window is open for a minion, and why (the reason never holds a value)."""

    open: bool
    reason: str
    group: str | None = None


def references(pillar: Any, prefix: str | None = "/phoenix/") -> dict[str, str]:
    """``phoenix:secrets:ssm`` from the minion's pillar, checked: names and SSM parameter names.

    ``prefix`` (the ext_pillar's ``prefix`` option) restricts which parameters may be referenced.
    """
    node: Any = pillar
    for part in ("phoenix", "secrets", "ssm"):
        node = node.get(part) if hasattr(node, "get") else None
        if node is None:
            return {}
    if not hasattr(node, "items"):
        raise ProvisionInputError(STEP, "phoenix:secrets:ssm must map names to SSM parameter names")
    refs: dict[str, str] = {}
    for name, param in node.items():
        if not isinstance(name, str) or not NAME.match(name):
            raise ProvisionInputError(STEP, f"phoenix:secrets:ssm: {name!r} is not a valid secret name "
                                            "(letters, digits, _ . -)")
        if not isinstance(param, str) or not SSM_NAME.match(param):
            raise ProvisionInputError(STEP, f"phoenix:secrets:ssm:{name} must be an SSM parameter name, got "
                                            f"{type(param).__name__}")
        if prefix and not param.startswith(prefix):
            raise ProvisionInputError(STEP, f"phoenix:secrets:ssm:{name}: {param} is outside {prefix} (the "
                                            "ext_pillar's prefix option): move the parameter or widen prefix")
        refs[name] = param
    return refs


def window(minion_id: str, ledger: LedgerLike, aws: Any) -> Window:
    """Is the window open for ``minion_id``? Asks the ledger, then AWS (both, every time)."""
    from phoenix.aws import PhoenixAWSError

    if not INSTANCE_ID.match(str(minion_id)):
        return Window(False, "the minion id is not an EC2 instance id")
    action = ledger.in_flight(minion_id, LAUNCHING)
    if action is None:
        return Window(False, "the ledger has no in-flight LAUNCHING action for it")
    group = getattr(action, "group", None)
    try:
        found = aws.call("autoscaling", "describe_auto_scaling_instances", minion_id,
                         InstanceIds=[minion_id]).get("AutoScalingInstances", [])
    except PhoenixAWSError as exc:
        return Window(False, f"AWS could not confirm Pending:Wait ({exc.code or 'error'})", group)
    if not found:
        return Window(False, "AWS does not know it as an Auto Scaling instance", group)
    state = found[0].get("LifecycleState")
    actual_group = found[0].get("AutoScalingGroupName")
    if state != "Pending:Wait":
        return Window(False, f"AWS says {state}, not Pending:Wait", group)
    if group and actual_group != group:
        return Window(False, f"AWS has it in group {actual_group}, the ledger in {group}", group)
    return Window(True, "in-flight LAUNCHING action and Pending:Wait", actual_group)


def fetch(aws: Any, refs: Mapping[str, str], require_secure: bool = True) -> dict[str, str]:
    """Decrypt the referenced parameters (GetParameters, 10 at a time). ProvisionError names what is wrong."""
    from phoenix.aws import PhoenixAWSError

    by_param: dict[str, list[str]] = {}
    for name, param in refs.items():
        by_param.setdefault(param, []).append(name)
    params = sorted(by_param)
    values: dict[str, str] = {}
    for start in range(0, len(params), 10):
        batch = params[start:start + 10]
        try:
            out = aws.call("ssm", "get_parameters", ",".join(batch), _sensitive=True, Names=batch, WithDecryption=True)
        except PhoenixAWSError as exc:
            raise ProvisionError(STEP, f"cannot read SSM parameters {', '.join(batch)}: {exc.code}: "
                                       f"{exc.message}") from None
        if out.get("InvalidParameters"):
            raise ProvisionError(STEP, "SSM parameters not found: " + ", ".join(sorted(out["InvalidParameters"]))
                                 + ": create them (SecureString) or fix phoenix:secrets:ssm")
        for item in out.get("Parameters", []):
            if require_secure and item.get("Type") != "SecureString":
                raise ProvisionError(STEP, f"SSM parameter {item['Name']} is a {item.get('Type')}, not a "
                                           "SecureString: store secrets encrypted")
            for name in by_param[item["Name"]]:
                values[name] = item["Value"]
    return values


Notify = Callable[[str, dict[str, Any]], Any]


def compile_for(minion_id: str, pillar: Any, ledger: LedgerLike | None, aws: Any, *, prefix: str | None = "/phoenix/",
                require_secure: bool = True, notify: Notify | None = None) -> dict[str, Any]:
    """The ext_pillar's answer for ``minion_id``: the values inside the window, ``{}`` outside or on error.

    ``notify(outcome, data)`` (``granted`` / ``refused`` / ``failed``) receives names and reasons only.
    """
    note = notify or (lambda outcome, data: None)
    try:
        refs = references(pillar, prefix)
    except ProvisionError as exc:
        note("failed", {"reason": str(exc)})
        return {}
    if not refs:
        return {}
    if ledger is None:
        note("refused", {"reason": "no ledger configured", "names": sorted(refs)})
        return {}
    state = window(minion_id, ledger, aws)
    if not state.open:
        note("refused", {"reason": state.reason, "names": sorted(refs)})
        return {}
    try:
        values = fetch(aws, refs, require_secure)
    except ProvisionError as exc:
        note("failed", {"reason": str(exc), "names": sorted(refs)})
        return {}
    note("granted", {"names": sorted(values), "group": state.group})
    return {"phoenix": {"secrets": {"values": values}}}
