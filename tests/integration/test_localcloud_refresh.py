"""localcloud: native instance refresh and MaxInstanceLifetime on the controllable clock.
Real moto server, real boto3, no mocks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from localcloud import LocalCloud
from localcloud.testing import client, wait_until

AMI = "ami-12c6146b"
DAY = 86400


@pytest.fixture
def cloud() -> Iterator[LocalCloud]:
    with LocalCloud(boot_seconds=0.1) as running:
        yield running


@pytest.fixture
def asg(cloud: LocalCloud) -> Any:
    ec2 = client(cloud.endpoint, "ec2")
    ec2.create_launch_template(LaunchTemplateName="web-lt", LaunchTemplateData={"ImageId": AMI,
                                                                                "InstanceType": "t3.micro"})
    return client(cloud.endpoint, "autoscaling")


def make_group(asg: Any, desired: int, **extra: Any) -> None:
    asg.create_auto_scaling_group(AutoScalingGroupName="web", MinSize=1, MaxSize=desired + 2,
                                  DesiredCapacity=desired, LaunchTemplate={"LaunchTemplateName": "web-lt"},
                                  AvailabilityZones=["us-east-1a"], **extra)


def in_service(asg: Any, count: int) -> set[str]:
    def ready() -> set[str] | None:
        instances = asg.describe_auto_scaling_groups(AutoScalingGroupNames=["web"])["AutoScalingGroups"][0]["Instances"]
        ok = len(instances) == count and all(i["LifecycleState"] == "InService" for i in instances)
        return {i["InstanceId"] for i in instances} if ok else None

    return wait_until(ready, message=f"{count} InService")


def refresh_status(asg: Any, refresh_id: str) -> dict[str, Any]:
    found = asg.describe_instance_refreshes(AutoScalingGroupName="web", InstanceRefreshIds=[refresh_id])
    return found["InstanceRefreshes"][0]


def test_instance_refresh_replaces_every_instance_keeping_min_healthy(cloud: LocalCloud, asg: Any) -> None:
    make_group(asg, desired=4)
    old = in_service(asg, 4)
    started = cloud.clock.now()
    refresh_id = asg.start_instance_refresh(
        AutoScalingGroupName="web", Preferences={"MinHealthyPercentage": 50, "InstanceWarmup": 30})["InstanceRefreshId"]
    with pytest.raises(ClientError) as raised:
        asg.start_instance_refresh(AutoScalingGroupName="web")
    assert raised.value.response["Error"]["Code"] == "InstanceRefreshInProgress"

    def finished() -> dict[str, Any] | None:
        cloud.advance(30)  # warm-up passes on the virtual clock
        status = refresh_status(asg, refresh_id)
        return status if status["Status"] not in ("Pending", "InProgress") else None

    status = wait_until(finished, message="the refresh to finish")
    assert status["Status"] == "Successful" and status["PercentageComplete"] == 100
    assert status["Preferences"]["MinHealthyPercentage"] == 50
    new = in_service(asg, 4)
    assert not old & new
    during = [e for e in cloud.timeline("web") if e["time"] >= started]
    assert min(e["in_service"] for e in during) >= 2


def test_cancel_instance_refresh(cloud: LocalCloud, asg: Any) -> None:
    make_group(asg, desired=2)
    in_service(asg, 2)
    refresh_id = asg.start_instance_refresh(
        AutoScalingGroupName="web", Preferences={"MinHealthyPercentage": 50, "InstanceWarmup": 3600})["InstanceRefreshId"]
    wait_until(lambda: refresh_status(asg, refresh_id)["PercentageComplete"] > 0, message="the first batch")
    assert asg.cancel_instance_refresh(AutoScalingGroupName="web")["InstanceRefreshId"] == refresh_id
    wait_until(lambda: refresh_status(asg, refresh_id)["Status"] == "Cancelled", message="Cancelled")
    with pytest.raises(ClientError) as raised:
        asg.cancel_instance_refresh(AutoScalingGroupName="web")
    assert raised.value.response["Error"]["Code"] == "ActiveInstanceRefreshNotFound"


def test_max_instance_lifetime_replaces_old_instances_as_the_clock_passes(cloud: LocalCloud, asg: Any) -> None:
    make_group(asg, desired=2, MaxInstanceLifetime=DAY)
    first = in_service(asg, 2)
    group = asg.describe_auto_scaling_groups(AutoScalingGroupNames=["web"])["AutoScalingGroups"][0]
    assert group["MaxInstanceLifetime"] == DAY
    cloud.advance(DAY / 2)
    assert in_service(asg, 2) == first  # half a day: nothing to do
    cloud.advance(DAY / 2 + 60)
    second = wait_until(lambda: (ids := in_service(asg, 2)) and not ids & first and ids, message="replacement")
    assert not second & first
    timeline = cloud.timeline("web")
    assert timeline[-1]["in_service"] == 2
    with pytest.raises(ClientError) as raised:
        asg.update_auto_scaling_group(AutoScalingGroupName="web", MaxInstanceLifetime=60)
    assert raised.value.response["Error"]["Code"] == "ValidationError"


def test_max_instance_lifetime_replaces_up_to_ten_percent_at_once_terminating_first(cloud: LocalCloud,
                                                                                    asg: Any) -> None:
    """20 instances expire together: AWS replaces "up to 10 percent of the current capacity" at once, and
    terminates before it launches (the default instance maintenance behaviour): never more than 2 out of
    service, never more instances than desired, and in the end every one of them replaced."""
    make_group(asg, desired=20, MaxInstanceLifetime=DAY)
    first = in_service(asg, 20)
    start = cloud.clock.now()
    cloud.advance(DAY + 60)
    wait_until(lambda: (ids := in_service(asg, 20)) and not ids & first, timeout=120, message="all 20 replaced")
    during = [point for point in cloud.timeline("web") if point["time"] > start]
    assert during, "the replacement left no timeline"
    assert min(point["in_service"] for point in during) == 18  # two at a time: 10 % of 20
    assert max(point["instances"] for point in during) <= 20  # terminate first, no surge
    assert during[-1]["in_service"] == 20


def test_instance_refresh_to_a_desired_launch_template_version(cloud: LocalCloud, asg: Any) -> None:
    make_group(asg, desired=2)
    old = in_service(asg, 2)
    ec2 = client(cloud.endpoint, "ec2")
    ec2.create_launch_template_version(LaunchTemplateName="web-lt", SourceVersion="1",
                                       LaunchTemplateData={"TagSpecifications": [
                                           {"ResourceType": "instance", "Tags": [{"Key": "Rebuild", "Value": "2"}]}]})
    refresh_id = asg.start_instance_refresh(
        AutoScalingGroupName="web", Preferences={"MinHealthyPercentage": 50, "SkipMatching": True, "InstanceWarmup": 0},
        DesiredConfiguration={"LaunchTemplate": {"LaunchTemplateName": "web-lt", "Version": "2"}})["InstanceRefreshId"]
    wait_until(lambda: refresh_status(asg, refresh_id)["Status"] == "Successful", message="the refresh")
    new = in_service(asg, 2)
    assert not old & new
    described = asg.describe_auto_scaling_instances(InstanceIds=sorted(new))["AutoScalingInstances"]
    assert {i["LaunchTemplate"]["Version"] for i in described} == {"2"}
    # SkipMatching: a second refresh to the same version has nothing to replace
    again = asg.start_instance_refresh(AutoScalingGroupName="web", Preferences={"SkipMatching": True, "InstanceWarmup": 0})
    wait_until(lambda: refresh_status(asg, again["InstanceRefreshId"])["Status"] == "Successful", message="no-op")
    assert in_service(asg, 2) == new


# ---------------------------------------------------------------- protected / Standby instances, checkpoints
# RefreshPreferences (Auto Scaling API Reference): ScaleInProtectedInstances Refresh | Ignore | Wait and
# StandbyInstances Terminate | Ignore | Wait, both "Wait (default)": wait one hour, "Otherwise, the instance
# refresh will fail". CheckpointDelay defaults to 3600 when only CheckpointPercentages is given.

def _protect_one(asg: Any, ids: set[str]) -> str:
    victim = sorted(ids)[0]
    asg.set_instance_protection(AutoScalingGroupName="web", InstanceIds=[victim], ProtectedFromScaleIn=True)
    return victim


def _run_to_end(cloud: LocalCloud, asg: Any, refresh_id: str, step: float = 300) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        cloud.advance(step)
        status = refresh_status(asg, refresh_id)
        return status if status["Status"] not in ("Pending", "InProgress", "Cancelling") else None

    return wait_until(finished, message="the refresh to finish")


def _alive(asg: Any) -> set[str]:
    instances = asg.describe_auto_scaling_groups(AutoScalingGroupNames=["web"])["AutoScalingGroups"][0]["Instances"]
    return {i["InstanceId"] for i in instances}


def test_protected_instance_default_wait_fails_after_an_hour(cloud: LocalCloud, asg: Any) -> None:
    make_group(asg, desired=2)
    protected = _protect_one(asg, in_service(asg, 2))
    started = cloud.clock.now()
    refresh_id = asg.start_instance_refresh(
        AutoScalingGroupName="web", Preferences={"MinHealthyPercentage": 50, "InstanceWarmup": 0})["InstanceRefreshId"]
    status = _run_to_end(cloud, asg, refresh_id)
    assert status["Preferences"]["ScaleInProtectedInstances"] == "Wait"
    assert status["Preferences"]["StandbyInstances"] == "Wait"
    assert status["Status"] == "Failed" and protected in status["StatusReason"]
    assert cloud.clock.now() - started >= 3600
    assert protected in _alive(asg)  # left old, the other one was replaced
    assert len(_alive(asg)) == 2


def test_protected_instance_wait_resumes_when_protection_is_removed(cloud: LocalCloud, asg: Any) -> None:
    make_group(asg, desired=2)
    protected = _protect_one(asg, in_service(asg, 2))
    refresh_id = asg.start_instance_refresh(
        AutoScalingGroupName="web", Preferences={"MinHealthyPercentage": 50, "InstanceWarmup": 0,
                                                 "ScaleInProtectedInstances": "Wait"})["InstanceRefreshId"]
    wait_until(lambda: "Waiting" in (refresh_status(asg, refresh_id).get("StatusReason") or ""),
               message="the refresh to wait for the protected instance")
    asg.set_instance_protection(AutoScalingGroupName="web", InstanceIds=[protected], ProtectedFromScaleIn=False)
    status = _run_to_end(cloud, asg, refresh_id, step=30)
    assert status["Status"] == "Successful"
    assert protected not in _alive(asg)


@pytest.mark.parametrize("preference, replaced", [("Ignore", False), ("Refresh", True)])
def test_protected_instance_ignore_or_refresh(cloud: LocalCloud, asg: Any, preference: str, replaced: bool) -> None:
    make_group(asg, desired=2)
    old = in_service(asg, 2)
    protected = _protect_one(asg, old)
    refresh_id = asg.start_instance_refresh(
        AutoScalingGroupName="web", Preferences={"MinHealthyPercentage": 50, "InstanceWarmup": 0,
                                                 "ScaleInProtectedInstances": preference})["InstanceRefreshId"]
    status = _run_to_end(cloud, asg, refresh_id, step=30)
    assert status["Status"] == "Successful"
    alive = in_service(asg, 2)
    assert (protected not in alive) is replaced
    assert not (old - {protected}) & alive  # the unprotected one is always replaced


@pytest.mark.parametrize("preference", ["Ignore", "Terminate", "Wait"])
def test_standby_instance_preferences(cloud: LocalCloud, asg: Any, preference: str) -> None:
    make_group(asg, desired=3)
    standby = sorted(in_service(asg, 3))[0]
    asg.enter_standby(AutoScalingGroupName="web", InstanceIds=[standby], ShouldDecrementDesiredCapacity=True)
    refresh_id = asg.start_instance_refresh(
        AutoScalingGroupName="web", Preferences={"MinHealthyPercentage": 50, "InstanceWarmup": 0,
                                                 "StandbyInstances": preference})["InstanceRefreshId"]
    status = _run_to_end(cloud, asg, refresh_id, step=300)
    assert status["Status"] == ("Failed" if preference == "Wait" else "Successful")
    assert (standby in _alive(asg)) is (preference != "Terminate")


def test_checkpoints_pause_for_the_delay_on_the_virtual_clock(cloud: LocalCloud, asg: Any) -> None:
    make_group(asg, desired=4)
    in_service(asg, 4)
    refresh_id = asg.start_instance_refresh(
        AutoScalingGroupName="web", Preferences={"MinHealthyPercentage": 75, "InstanceWarmup": 0,
                                                 "CheckpointPercentages": [50, 100]})["InstanceRefreshId"]
    status = wait_until(lambda: (s := refresh_status(asg, refresh_id))["PercentageComplete"] >= 50 and s,
                        message="the first checkpoint")
    assert status["Preferences"]["CheckpointDelay"] == 3600  # AWS's default when only percentages are given
    assert status["Preferences"]["CheckpointPercentages"] == [50, 100]
    reached = cloud.clock.now()
    cloud.advance(3500)
    time_held = refresh_status(asg, refresh_id)
    assert time_held["PercentageComplete"] == 50 and time_held["Status"] == "InProgress"
    assert "checkpoint 50%" in time_held["StatusReason"]
    status = _run_to_end(cloud, asg, refresh_id, step=100)
    assert status["Status"] == "Successful" and cloud.clock.now() - reached >= 3600
    with pytest.raises(ClientError) as raised:
        asg.start_instance_refresh(AutoScalingGroupName="web", Preferences={"CheckpointDelay": 60})
    assert raised.value.response["Error"]["Code"] == "ValidationError"
    with pytest.raises(ClientError) as raised:
        asg.start_instance_refresh(AutoScalingGroupName="web", Preferences={"ScaleInProtectedInstances": "Skip"})
    assert raised.value.response["Error"]["Code"] == "ValidationError"
