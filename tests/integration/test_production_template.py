"""The production CloudFormation template (templates/phoenix-fleet.yaml): cfn-lint clean with the project
venv's cfn-lint, and runnable in localcloud as is: the group with its target group, both lifecycle hooks,
the queue with its dead-letter queue, the stack policy, a rolling rebuild that drains old instances."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from localcloud import LocalCloud
from localcloud.testing import Provisioner, client, wait_until
from phoenix.rebuild import policy as stack_policy

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
TEMPLATE = TEMPLATES / "phoenix-fleet.yaml"
POLICY = TEMPLATES / "phoenix-fleet.stack-policy.json"
CFN_LINT = Path(sys.executable).parent / "cfn-lint"


def lint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CFN_LINT), str(path)], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=300)


def test_template_is_cfn_lint_clean(tmp_path: Path) -> None:
    result = lint(TEMPLATE)
    assert result.returncode == 0, result.stdout + result.stderr
    broken = tmp_path / "broken.yaml"  # the same linter does catch a mistake in this template
    broken.write_text(TEMPLATE.read_text().replace("HeartbeatTimeout: !Ref HookHeartbeatTimeout", "HeartbeatTimeout: !Ref HookHeartbeatTimeoutTypo"))
    assert lint(broken).returncode != 0


def parameters(ec2: Any, **overrides: str) -> list[dict[str, str]]:
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    subnets = ",".join(s["SubnetId"] for s in ec2.describe_subnets(
        Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"][:2])
    values = {"RebuildTimestamp": "2026-01-01T00:00:00Z", "ImageId": "ami-12c6146b", "InstanceType": "t3.small",
              "MinSize": "2", "MaxSize": "4", "DesiredCapacity": "2", "RollingMaxBatchSize": "1",
              "RollingMinInstancesInService": "2", "MaxInstanceLifetime": "172800", "AppPort": "80",
              "HealthCheckPath": "/health", "SaltMaster": "salt.example.internal", "SaltVersion": "3008",
              "HookHeartbeatTimeout": "900", "RetireHeartbeatTimeout": "300", "VpcId": vpc,
              "InstanceSubnetIds": subnets, "LoadBalancerSubnetIds": subnets, "ClientCidr": "0.0.0.0/0",
              "SaltMasterCidr": "10.0.0.10/32", "DeregistrationDelay": "60", "ArtifactBucket": "phoenix-artifacts",
              "ArtifactPrefix": "phoenix/", **overrides}
    return [{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()]


def test_localcloud_runs_the_template(tmp_path: Path) -> None:
    with LocalCloud(boot_seconds=1, clock_rate=20) as cloud:
        aws = {n: client(cloud.endpoint, n) for n in ("cloudformation", "autoscaling", "ec2", "sqs", "elbv2")}
        cfn = aws["cloudformation"]
        cfn.create_stack(StackName="web", TemplateBody=TEMPLATE.read_text(), Parameters=parameters(aws["ec2"]),
                         Capabilities=["CAPABILITY_IAM"], StackPolicyBody=POLICY.read_text())
        stack = cfn.describe_stacks(StackName="web")["Stacks"][0]
        assert stack["StackStatus"] == "CREATE_COMPLETE"
        out = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
        name = out["GroupName"]

        # the group, its target group and the bounded hooks
        grp = aws["autoscaling"].describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]
        assert grp["TargetGroupARNs"] == [out["TargetGroupArn"]]
        assert grp["MaxInstanceLifetime"] == 172800
        hooks = {h["LifecycleHookName"]: h for h in
                 aws["autoscaling"].describe_lifecycle_hooks(AutoScalingGroupName=name)["LifecycleHooks"]}
        assert (hooks["provision"]["LifecycleTransition"], hooks["provision"]["DefaultResult"],
                hooks["provision"]["HeartbeatTimeout"]) == ("autoscaling:EC2_INSTANCE_LAUNCHING", "ABANDON", 900)
        assert (hooks["retire"]["LifecycleTransition"], hooks["retire"]["DefaultResult"]) == (
            "autoscaling:EC2_INSTANCE_TERMINATING", "CONTINUE")
        assert {h["NotificationTargetARN"] for h in hooks.values()} == {out["HookQueueArn"]}
        tg_attributes = {a["Key"]: a["Value"] for a in aws["elbv2"].describe_target_group_attributes(
            TargetGroupArn=out["TargetGroupArn"])["Attributes"]}
        assert tg_attributes["deregistration_delay.timeout_seconds"] == "60"

        # the queue dead-letters into its DLQ
        queue = aws["sqs"].get_queue_url(QueueName="web-lifecycle")["QueueUrl"]
        attributes = aws["sqs"].get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
        dlq_arn = aws["sqs"].get_queue_attributes(QueueUrl=aws["sqs"].get_queue_url(
            QueueName="web-lifecycle-dlq")["QueueUrl"], AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        assert json.loads(attributes["RedrivePolicy"]) == {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 5}

        # launch template: IMDSv2 only, user data with the master and the identity grains
        version = aws["ec2"].describe_launch_template_versions(LaunchTemplateId=out["LaunchTemplateId"])[
            "LaunchTemplateVersions"][0]["LaunchTemplateData"]
        assert version["MetadataOptions"]["HttpTokens"] == "required"
        user_data = base64.b64decode(version["UserData"]).decode()
        for needle in ("master: salt.example.internal", "id: $instance_id", "phoenix_identity_document",
                       "phoenix_identity_signature", "api/token", "Pin: version 3008.*",
                       "acceptance_wait_time: 0.5"):
            assert needle in user_data
        script = tmp_path / "user-data.sh"
        script.write_text(user_data)
        checked = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stderr

        # the stack policy lets a rebuild change the group and its launch template, nothing else
        policy = stack_policy.parse(cfn.get_stack_policy(StackName="web")["StackPolicyBody"])
        resources = [(r["LogicalResourceId"], r["ResourceType"])
                     for r in cfn.list_stack_resources(StackName="web")["StackResourceSummaries"]]
        report = stack_policy.analyse(policy, resources, ["WebGroup", "LaunchTemplate"])
        assert report.ok, report.problems
        assert stack_policy.analyse(None, resources, ["WebGroup", "LaunchTemplate"]).ok is False

        # provisioning through the hook puts instances behind the target group; a new RebuildTimestamp
        # replaces them, each drained (60 s) before it terminates
        def healthy() -> set[str]:
            return {d["Target"]["Id"] for d in aws["elbv2"].describe_target_health(
                TargetGroupArn=out["TargetGroupArn"])["TargetHealthDescriptions"]
                if d["TargetHealth"]["State"] == "healthy"}

        with Provisioner(cloud.endpoint, queue):
            first = wait_until(lambda: (lambda h: h if len(h) == 2 else None)(healthy()), timeout=30,
                               message="two healthy targets")
            cfn.update_stack(StackName="web", UsePreviousTemplate=True, Capabilities=["CAPABILITY_IAM"],
                             Parameters=parameters(aws["ec2"], RebuildTimestamp="2026-01-02T00:00:00Z"))
            wait_until(lambda: cfn.describe_stacks(StackName="web")["Stacks"][0]["StackStatus"] == "UPDATE_COMPLETE",
                       timeout=60, message="the rolling rebuild")
            wait_until(lambda: len(healthy()) == 2 and not healthy() & first, timeout=30, message="new targets")
        drained = [e for e in cloud.timeline(name) if "draining" in e["event"]]
        assert len(drained) == 2
        timeline = cloud.timeline(name)
        served = next(i for i, e in enumerate(timeline) if e["in_service"] == 2)
        assert min(e["in_service"] for e in timeline[served:]) == 2  # MinInstancesInService held


def test_a_rebuild_that_passes_back_described_parameters_changes_only_the_fleet() -> None:
    """rebuild.cycle passes every parameter back with the value DescribeStacks shows (only RebuildTimestamp
    new). The list parameters (subnets) must come back as AWS shows them, ``a,b``: moto renders the Python
    list, which made the update change the load balancer too and the stack policy refuse it."""
    with LocalCloud(boot_seconds=1, clock_rate=20) as cloud:
        aws = {n: client(cloud.endpoint, n) for n in ("cloudformation", "ec2", "sqs")}
        cfn = aws["cloudformation"]
        cfn.create_stack(StackName="web", TemplateBody=TEMPLATE.read_text(), Capabilities=["CAPABILITY_IAM"],
                         Parameters=parameters(aws["ec2"], MinSize="1", DesiredCapacity="1",
                                               RollingMinInstancesInService="1"), StackPolicyBody=POLICY.read_text())
        described = cfn.describe_stacks(StackName="web")["Stacks"][0]["Parameters"]
        subnets = next(p["ParameterValue"] for p in described if p["ParameterKey"] == "InstanceSubnetIds")
        assert subnets.count(",") == 1 and "[" not in subnets and "'" not in subnets, subnets
        passed_back = [{"ParameterKey": p["ParameterKey"], "ParameterValue":
                        "2026-01-02T00:00:00Z" if p["ParameterKey"] == "RebuildTimestamp" else p["ParameterValue"]}
                       for p in described]
        queue = aws["sqs"].get_queue_url(QueueName="web-lifecycle")["QueueUrl"]
        with Provisioner(cloud.endpoint, queue):
            cfn.update_stack(StackName="web", UsePreviousTemplate=True, Capabilities=["CAPABILITY_IAM"],
                             Parameters=passed_back)
            status = wait_until(lambda: (lambda s: s if not s.endswith("IN_PROGRESS") else None)(
                cfn.describe_stacks(StackName="web")["Stacks"][0]["StackStatus"]), timeout=60, message="the update")
        reasons = [e.get("ResourceStatusReason") for e in cfn.describe_stack_events(StackName="web")["StackEvents"]
                   if e.get("ResourceStatusReason")]
        assert status == "UPDATE_COMPLETE", reasons[:5]
