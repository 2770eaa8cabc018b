"""The launch -> runtime instance profile swap, verified, and revocation of the launch role's sessions.

A new instance boots with the group's **launch** instance profile (broad enough to provision: read its
secrets, the release bucket...). Before ``CONTINUE`` Phoenix replaces it with the group's restricted
**runtime** profile (``ReplaceIamInstanceProfileAssociation``) and verifies the result with
``DescribeIamInstanceProfileAssociations``. A failed or unverifiable swap is an ABANDON reason.

**The AWS fact.** Swapping the profile does not revoke anything: credentials the instance already fetched
from IMDS under the launch role stay valid until they expire (temporary role credentials, typically up to
6 hours for instance profiles), and a process on the instance that cached them can keep using the launch
role's permissions. Two remedies:

* **Deny by token issue time** (implemented, :func:`revocation_policy`): right after the swap, an inline
  policy on each launch role denies every action to sessions of *that instance* issued before the swap::

      {"Effect": "Deny", "Action": "*", "Resource": "*",
       "Condition": {"StringEquals": {"ec2:SourceInstanceARN": "arn:aws:ec2:<region>:<acct>:instance/<id>"},
                     "DateLessThan": {"aws:TokenIssueTime": "<swap time, AWS's clock>"}}}

  New instances (other ARNs) and later sessions are unaffected. The policy is named
  ``phoenix-revoke-<instance id>`` and removed on termination (:func:`forget`); mind the 10,240-character
  quota of inline policies per role (~25 instances provisioning at once per launch role).
* **Secrets that expire by themselves**: deploy tokens and the like with a lifetime of the provisioning
  window (minutes), so a leaked launch session finds nothing useful.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from phoenix.provision.errors import ProvisionError, ProvisionInputError

STEP = "profile-swap"
POLICY_PREFIX = "phoenix-revoke-"


def _fail(reason: str) -> ProvisionError:
    return ProvisionError(STEP, reason)


def association(aws: Any, instance_id: str) -> dict[str, Any] | None:
    """The instance's current profile association (``associated`` or ``associating``), or None."""
    items = aws.paginate("ec2", "describe_iam_instance_profile_associations", "IamInstanceProfileAssociations",
                         instance_id, Filters=[{"Name": "instance-id", "Values": [instance_id]}])
    live = [a for a in items if a.get("State") in ("associated", "associating")]
    return live[0] if live else None


def _profile_name(profile: str) -> str:
    return profile.rsplit("/", 1)[-1] if profile.startswith("arn:") else profile


def resolve(aws: Any, profile: Any) -> dict[str, Any]:
    """``{"Arn", "Name", "Roles": [role names]}`` of an instance profile given by name or ARN."""
    from phoenix.aws import PhoenixAWSError

    if not profile:
        raise ProvisionInputError(STEP, "no runtime instance profile configured: set phoenix:profile:runtime "
                                        "(name or ARN of the group's restricted profile)")
    name = _profile_name(str(profile))
    try:
        out = aws.call("iam", "get_instance_profile", name, InstanceProfileName=name)["InstanceProfile"]
    except PhoenixAWSError as exc:
        raise _fail(f"instance profile {profile} cannot be read: {exc.code}: {exc.message}") from None
    return {"Arn": out["Arn"], "Name": out["InstanceProfileName"], "Roles": [r["RoleName"] for r in out["Roles"]]}


def instance_arn(aws: Any, instance_id: str, profile_arn: str) -> str:
    """The instance's ARN (partition and account from the profile ARN, region from the adapter)."""
    parts = profile_arn.split(":")
    partition, account = parts[1], parts[4]
    region = aws.settings.region or aws.client("ec2").meta.region_name
    return f"arn:{partition}:ec2:{region}:{account}:instance/{instance_id}"


def revocation_policy(instance_arn_: str, issued_before: datetime) -> dict[str, Any]:
    """The inline policy denying the instance's launch-role sessions issued before ``issued_before``."""
    stamp = issued_before.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"Version": "2012-10-17", "Statement": [{
        "Sid": "PhoenixRevokeLaunchSessions", "Effect": "Deny", "Action": "*", "Resource": "*",
        "Condition": {"StringEquals": {"ec2:SourceInstanceARN": instance_arn_},
                      "DateLessThan": {"aws:TokenIssueTime": stamp}}}]}


def swap(aws: Any, instance_id: str, runtime: Any, *, revoke: bool = True, verify_timeout: float = 30.0,
         poll: float = 0.5, margin_seconds: float = 60.0,
         sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """Replace the launch profile with ``runtime``, verify it, and (``revoke``) deny older launch sessions.

    The deny covers launch-role sessions of this instance issued up to ``margin_seconds`` after the swap
    (AWS's clock): IMDS may hand out the old role's credentials for a short while after a replacement, and
    after the swap no legitimate launch-role session of this instance exists.

    Returns ``{instance_id, changed, launch_profile, runtime_profile, association_id, revoked_roles,
    revoked_before}``. Idempotent: an instance already on the runtime profile is left as it is (the
    revocation policy is still ensured).
    """
    from phoenix.aws import PhoenixAWSError

    target = resolve(aws, runtime)
    current = association(aws, instance_id)
    if current is None:
        raise _fail(f"{instance_id} has no instance profile association: the launch template must give it "
                    "the launch profile (IamInstanceProfile)")
    launch_arn = current["IamInstanceProfile"]["Arn"]
    out: dict[str, Any] = {"instance_id": instance_id, "launch_profile": launch_arn, "runtime_profile": target["Arn"],
                           "changed": False, "revoked_roles": [], "revoked_before": None}
    if launch_arn != target["Arn"]:
        try:
            replaced = aws.call("ec2", "replace_iam_instance_profile_association", instance_id,
                                IamInstanceProfile={"Arn": target["Arn"]}, AssociationId=current["AssociationId"])
        except PhoenixAWSError as exc:
            raise _fail(f"ReplaceIamInstanceProfileAssociation for {instance_id} failed: {exc.code}: "
                        f"{exc.message}") from None
        out["changed"] = True
        out["association_id"] = replaced["IamInstanceProfileAssociation"]["AssociationId"]
    else:
        out["association_id"] = current["AssociationId"]
    swapped_at = aws.server_time()
    revoke_before = swapped_at + timedelta(seconds=margin_seconds)
    deadline = time.monotonic() + verify_timeout
    while True:
        seen = association(aws, instance_id)
        if seen and seen.get("State") == "associated" and seen["IamInstanceProfile"]["Arn"] == target["Arn"]:
            break
        if time.monotonic() >= deadline:
            what = f"{seen['IamInstanceProfile']['Arn']} ({seen.get('State')})" if seen else "no association"
            raise _fail(f"{instance_id} still shows {what} {verify_timeout:g} s after the swap to "
                        f"{target['Arn']}")
        sleep(poll)
    if revoke and out["changed"]:
        launch = resolve(aws, launch_arn)
        out["revoked_roles"] = revoke_sessions(aws, instance_id, launch, revoke_before)
        out["revoked_before"] = revoke_before.strftime("%Y-%m-%dT%H:%M:%SZ")
    out["swapped_at"] = swapped_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    return out


def revoke_sessions(aws: Any, instance_id: str, launch: dict[str, Any], before: datetime) -> list[str]:
    """Put the revocation policy on every role of the launch profile; returns the role names."""
    from phoenix.aws import PhoenixAWSError

    document = json.dumps(revocation_policy(instance_arn(aws, instance_id, launch["Arn"]), before))
    for role in launch["Roles"]:
        try:
            aws.call("iam", "put_role_policy", role, RoleName=role, PolicyName=POLICY_PREFIX + instance_id,
                     PolicyDocument=document)
        except PhoenixAWSError as exc:
            raise _fail(f"could not deny the launch role {role}'s older sessions of {instance_id}: {exc.code}: "
                        f"{exc.message}") from None
    return list(launch["Roles"])


def forget(aws: Any, instance_id: str, roles: list[str] | None = None) -> list[str]:
    """Remove the instance's revocation policies (on termination). ``roles``: where to look (default all)."""
    from phoenix.aws import PhoenixAWSError

    name = POLICY_PREFIX + instance_id
    if roles is None:
        roles, marker = [], None
        while True:
            page = aws.call("iam", "list_roles", "roles", **({"Marker": marker} if marker else {}))
            roles += [r["RoleName"] for r in page.get("Roles", [])]
            marker = page.get("Marker") if page.get("IsTruncated") else None
            if not marker:
                break
    removed = []
    for role in roles:
        try:
            aws.call("iam", "delete_role_policy", role, RoleName=role, PolicyName=name)
            removed.append(role)
        except PhoenixAWSError as exc:
            if exc.code != "NoSuchEntity":
                raise _fail(f"could not remove {name} from {role}: {exc.code}: {exc.message}") from None
    return removed


def show(aws: Any, instance_id: str) -> dict[str, Any]:
    """The association as AWS reports it (``{}`` when there is none)."""
    current = association(aws, instance_id)
    if current is None:
        return {}
    return {"association_id": current["AssociationId"], "state": current.get("State"),
            "profile": current["IamInstanceProfile"]["Arn"]}


def now_utc() -> datetime:
    return datetime.now(timezone.utc)
