"""Reaching into the in-process moto backends, and the two small per-object adjustments localcloud
makes so moto's own responses report simulated lifecycle states."""

from __future__ import annotations

from typing import Any

from moto.autoscaling.models import FakeAutoScalingGroup, InstanceState, autoscaling_backends
from moto.cloudformation.models import cloudformation_backends
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ec2.models import ec2_backends
from moto.elbv2.models import elbv2_backends
from moto.sqs.models import sqs_backends

from localcloud.records import ACTIVE_STATES

ACCOUNT_ID = DEFAULT_ACCOUNT_ID


class TrackedGroup(FakeAutoScalingGroup):
    """An ASG whose capacity counts Pending/Pending:Wait instances, not only InService ones.

    moto counts only ``InService`` instances as active; with simulated Pending states it would
    otherwise launch extra instances on every capacity check.
    """

    def active_instances(self) -> list[InstanceState]:  # noqa: D102 - moto's contract
        return [x for x in self.instance_states if x.lifecycle_state in ACTIVE_STATES]


class TrackedInstanceState(InstanceState):
    """An ASG instance that reports the launch template version it was launched with."""

    _lc_launch_template: dict[str, Any] | None = None
    _lc_launch_configuration: str | None = None

    @property
    def launch_template(self) -> dict[str, Any] | None:  # noqa: D102 - moto's contract
        if self._lc_launch_template is not None:
            return self._lc_launch_template
        if self._lc_launch_configuration is not None:
            return None
        return super().launch_template

    @property
    def launch_configuration_name(self) -> str | None:  # noqa: D102 - moto's contract
        if self._lc_launch_template is not None:
            return None
        if self._lc_launch_configuration is not None:
            return self._lc_launch_configuration
        return super().launch_configuration_name


def track_group(group: FakeAutoScalingGroup) -> None:
    """Switch a moto group object to :class:`TrackedGroup` (idempotent)."""
    if type(group) is FakeAutoScalingGroup:
        group.__class__ = TrackedGroup


def track_instance_state(state: InstanceState, launch_template: dict[str, Any] | None,
                         launch_configuration: str | None = None) -> None:
    """Switch a moto instance state object to :class:`TrackedInstanceState` and pin what it was
    launched from (a launch template version, else a launch configuration)."""
    if type(state) is InstanceState:
        state.__class__ = TrackedInstanceState
    if launch_template is not None:
        state._lc_launch_template = launch_template  # type: ignore[attr-defined]
    elif launch_configuration:
        state._lc_launch_configuration = launch_configuration  # type: ignore[attr-defined]


def set_private_ip(instance: Any, address: str) -> None:
    """Give a moto EC2 instance ``address`` as its primary private IP (``PrivateIpAddress`` in
    DescribeInstances, on the instance and on its primary network interface)."""
    from moto.ec2.utils import generate_dns_from_ip

    nic = instance.nics[0]
    nic.private_ip_address = address
    primary: dict[str, Any] = {"Primary": True, "PrivateIpAddress": address}
    if getattr(nic, "private_dns_name", None):
        nic.private_dns_name = primary["PrivateDnsName"] = generate_dns_from_ip(address)
    nic.private_ip_addresses = [primary]


def autoscaling(region: str) -> Any:
    """moto's Auto Scaling backend for ``region``."""
    return autoscaling_backends[ACCOUNT_ID][region]


def ec2(region: str) -> Any:
    """moto's EC2 backend for ``region``."""
    return ec2_backends[ACCOUNT_ID][region]


def elbv2(region: str) -> Any:
    """moto's Elastic Load Balancing (v2) backend for ``region``."""
    return elbv2_backends[ACCOUNT_ID][region]


def cloudformation(region: str) -> Any:
    """moto's CloudFormation backend for ``region``."""
    return cloudformation_backends[ACCOUNT_ID][region]


def sqs(region: str) -> Any:
    """moto's SQS backend for ``region``."""
    return sqs_backends[ACCOUNT_ID][region]


def reset_all() -> None:
    """Clear every moto backend (what ``POST /moto-api/reset`` does)."""
    from moto.moto_api._internal.models import moto_api_backend

    moto_api_backend.reset()


def group_launch_version(group: FakeAutoScalingGroup) -> tuple[str, dict[str, Any] | None]:
    """A key naming what the group launches now, and the LaunchTemplate spec to report for it."""
    lt = group.ec2_launch_template
    if lt is not None:
        version = lt.get_version(group.launch_template_version)
        spec = {"LaunchTemplateId": lt.id, "LaunchTemplateName": lt.name, "Version": str(version.number)}
        return f"{lt.id}:{version.number}", spec
    return f"lc:{getattr(group, 'launch_configuration_name', None)}", None


def register_cfn_yaml_tags() -> None:
    """Make moto's CloudFormation YAML tags (``!Ref``, ``!Sub``...) work whatever ``yaml.Loader`` is.

    moto registers its tag constructor on ``yaml.Loader`` as it finds it, but Salt (imported in the
    same process by the tests and by anything that uses Salt's loader) rebinds ``yaml.Loader`` to
    ``yaml.CLoader``; register on both classes so templates parse either way.
    """
    import yaml
    from moto.cloudformation.utils import yaml_tag_constructor

    for loader in {yaml.loader.Loader, yaml.Loader, getattr(yaml, "CLoader", yaml.loader.Loader)}:
        yaml.add_multi_constructor("", yaml_tag_constructor, Loader=loader)
