"""What Phoenix asks AWS about an instance during provisioning (through :class:`phoenix.aws.AWS`)."""

from __future__ import annotations

from phoenix.aws import AWS


def instance_state(aws: AWS, instance_id: str) -> tuple[str | None, str | None]:
    """``(LifecycleState, AutoScalingGroupName)`` from Auto Scaling; ``(None, None)`` if it does not know it."""
    found = aws.call("autoscaling", "describe_auto_scaling_instances", instance_id,
                     InstanceIds=[instance_id]).get("AutoScalingInstances", [])
    for item in found:
        if item.get("InstanceId") == instance_id:
            return item.get("LifecycleState"), item.get("AutoScalingGroupName")
    return None, None


def private_ip(aws: AWS, instance_id: str) -> str | None:
    """The instance's ``PrivateIpAddress`` from EC2 (what the health check connects to)."""
    reservations = aws.call("ec2", "describe_instances", instance_id, InstanceIds=[instance_id]).get("Reservations", [])
    for reservation in reservations:
        for instance in reservation.get("Instances", []):
            if instance.get("InstanceId") == instance_id:
                return instance.get("PrivateIpAddress")
    return None


__all__ = ["instance_state", "private_ip"]
