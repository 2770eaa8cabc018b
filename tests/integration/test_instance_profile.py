"""The launch -> runtime instance profile swap against localcloud, as logic and through ``salt-run``.

Instances wait in Pending:Wait (nobody completes their hook), as they do while Phoenix provisions them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
import yaml

from localcloud import LocalCloud
from localcloud.awsquery import AwsError
from localcloud.testing import wait_until
from phoenix.aws import AWS, settings_from
from phoenix.provision import profile as p
from phoenix.provision.errors import ProvisionError, ProvisionInputError

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = (REPO / "localcloud" / "templates" / "web-fleet.yaml").read_text()
CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module", autouse=True)
def aws_env():
    with pytest.MonkeyPatch.context() as mp:
        for k, v in CREDS.items():
            mp.setenv(k, v)
        yield


@pytest.fixture(scope="module")
def fleet():
    with LocalCloud(boot_seconds=0.1) as cloud:
        session = boto3.session.Session(region_name="us-east-1")
        cfn = session.client("cloudformation", endpoint_url=cloud.endpoint)
        params = {"RebuildTimestamp": "initial", "DesiredCapacity": "3", "MaxSize": "6", "MinSize": "1"}
        cfn.create_stack(StackName="web", TemplateBody=TEMPLATE, Capabilities=["CAPABILITY_IAM"],
                         Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()])
        outputs = {o["OutputKey"]: o["OutputValue"] for o in cfn.describe_stacks(StackName="web")["Stacks"][0]["Outputs"]}
        asg = session.client("autoscaling", endpoint_url=cloud.endpoint)

        def waiting():
            g = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[outputs["GroupName"]])["AutoScalingGroups"][0]
            return [i["InstanceId"] for i in g["Instances"] if i["LifecycleState"] == "Pending:Wait"]

        ids = wait_until(lambda: len(waiting()) == 3 and waiting(), message="3 instances in Pending:Wait")
        yield {"cloud": cloud, "outputs": outputs, "ids": ids, "iam": session.client("iam", endpoint_url=cloud.endpoint),
               "ec2": session.client("ec2", endpoint_url=cloud.endpoint)}


def adapter(cloud) -> AWS:
    return AWS(settings_from({"endpoint_url": cloud.endpoint, "region": "us-east-1", "max_attempts": 2}))


def test_swap_replaces_verifies_and_revokes_older_launch_sessions(fleet):
    aws = adapter(fleet["cloud"])
    instance = fleet["ids"][0]
    launch, runtime = fleet["outputs"]["LaunchInstanceProfileArn"], fleet["outputs"]["RuntimeInstanceProfileArn"]
    assert p.show(aws, instance)["profile"] == launch  # localcloud associated the launch template's profile
    out = p.swap(aws, instance, runtime.rsplit("/", 1)[-1], verify_timeout=5, poll=0.05)
    assert out["changed"] is True and out["launch_profile"] == launch and out["runtime_profile"] == runtime
    seen = fleet["ec2"].describe_iam_instance_profile_associations(
        Filters=[{"Name": "instance-id", "Values": [instance]}])["IamInstanceProfileAssociations"]
    assert [(a["IamInstanceProfile"]["Arn"], a["State"]) for a in seen if a["State"] == "associated"] == [(runtime, "associated")]
    # the launch role now denies this instance's sessions issued before the swap (+ margin), and only those
    (role,) = out["revoked_roles"]
    doc = fleet["iam"].get_role_policy(RoleName=role, PolicyName=f"phoenix-revoke-{instance}")["PolicyDocument"]
    doc = json.loads(doc) if isinstance(doc, str) else doc
    cond = doc["Statement"][0]["Condition"]
    assert doc["Statement"][0]["Effect"] == "Deny"
    assert cond["StringEquals"]["ec2:SourceInstanceARN"].endswith(f":instance/{instance}")
    assert cond["DateLessThan"]["aws:TokenIssueTime"] == out["revoked_before"] > out["swapped_at"]
    # idempotent: a second swap changes nothing
    again = p.swap(aws, instance, runtime, verify_timeout=5, poll=0.05)
    assert again["changed"] is False and again["association_id"] == out["association_id"]
    # termination cleans the policy up
    assert p.forget(aws, instance) == [role]
    assert p.forget(aws, instance, [role]) == []


def test_failed_swaps_are_abandon_reasons(fleet):
    aws = adapter(fleet["cloud"])
    instance = fleet["ids"][1]
    with pytest.raises(ProvisionError, match=r"profile-swap: instance profile nope cannot be read: NoSuchEntity"):
        p.swap(aws, instance, "nope")
    with pytest.raises(ProvisionInputError, match="set phoenix:profile:runtime"):
        p.swap(aws, instance, None)
    runtime = fleet["outputs"]["RuntimeInstanceProfileArn"]

    def refuse(request, forward):
        raise AwsError("UnauthorizedOperation", "You are not authorized to perform this operation.", 403)

    cloud = fleet["cloud"]
    cloud.interceptors["ec2:ReplaceIamInstanceProfileAssociation"] = refuse
    try:
        with pytest.raises(ProvisionError, match="ReplaceIamInstanceProfileAssociation for .* failed: "
                                                 "UnauthorizedOperation"):
            p.swap(aws, instance, runtime)
    finally:
        del cloud.interceptors["ec2:ReplaceIamInstanceProfileAssociation"]
    # a replacement AWS accepts but never shows: verification times out
    cloud.interceptors["ec2:ReplaceIamInstanceProfileAssociation"] = lambda request, forward: (
        "200 OK", [("Content-Type", "text/xml")],
        b"<ReplaceIamInstanceProfileAssociationResponse><iamInstanceProfileAssociation><associationId>"
        b"iip-assoc-00000000</associationId></iamInstanceProfileAssociation>"
        b"</ReplaceIamInstanceProfileAssociationResponse>")
    try:
        with pytest.raises(ProvisionError, match=f"{instance} still shows .*LaunchInstanceProfile.* \(associated\) 0.3 s after the swap"):
            p.swap(aws, instance, runtime, verify_timeout=0.3, poll=0.05)
    finally:
        del cloud.interceptors["ec2:ReplaceIamInstanceProfileAssociation"]
    with pytest.raises(ProvisionError, match="has no instance profile association"):
        p.swap(aws, "i-00000000deadbeef0", runtime)


def test_salt_run_swap(fleet, tmp_path):
    instance = fleet["ids"][2]
    conf = tmp_path / "conf"
    conf.mkdir()
    (tmp_path / "root" / "var" / "cache" / "salt" / "master" / "proc").mkdir(parents=True)
    (conf / "master").write_text(yaml.safe_dump({
        "root_dir": str(tmp_path / "root"), "runner_dirs": [str(REPO / "_runners")],
        "utils_dirs": [str(REPO / "_utils")], "file_roots": {"base": [str(REPO / "salt")]},
        "phoenix": {"aws": {"endpoint_url": fleet["cloud"].endpoint, "region": "us-east-1", "max_attempts": 2},
                    "profile": {"runtime": fleet["outputs"]["RuntimeInstanceProfileArn"], "verify_timeout": 5}}}))
    run = [str(Path(sys.executable).parent / "salt-run"), "--config-dir", str(conf), "--out", "json",
           "--log-level", "warning"]
    env = {**os.environ, **CREDS}
    proc = subprocess.run(run + ["instance_profile.swap", instance], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    out = json.loads(proc.stdout)
    assert out["changed"] is True and out["runtime_profile"] == fleet["outputs"]["RuntimeInstanceProfileArn"]
    proc = subprocess.run(run + ["instance_profile.swap", "i-nope"], capture_output=True, text=True, env=env, timeout=120)
    assert "is not an EC2 instance id" in proc.stdout + proc.stderr  # salt-run reports it (exit status 0)
