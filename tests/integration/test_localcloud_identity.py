"""localcloud gives every instance its own loopback address (its private IP) and a signed identity
document served by a per-instance metadata service; verified over real HTTP with
phoenix.lifecycle.identity."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from typing import Any

import pytest

from localcloud import LocalCloud
from localcloud.testing import client, wait_until
from phoenix.lifecycle.identity import IdentityError, verify
from tests.integration.test_localcloud import make_group, make_queue, put_hook


@pytest.fixture(scope="module")
def cloud() -> Iterator[LocalCloud]:
    with LocalCloud(boot_seconds=0.1) as running:
        yield running


@pytest.fixture(scope="module")
def aws(cloud: LocalCloud) -> dict[str, Any]:
    return {name: client(cloud.endpoint, name) for name in ("autoscaling", "ec2", "sqs")}


def get(url: str) -> tuple[int, bytes, dict[str, str]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def group_instances(aws: dict[str, Any], group: str, count: int) -> list[str]:
    def enough() -> list[str]:
        found = aws["autoscaling"].describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"]
        ids = [i["InstanceId"] for i in found[0]["Instances"]]
        return ids if len(ids) >= count else []
    return wait_until(enough, message=f"{count} instances in {group}")


def test_private_ips_are_unique_loopback_addresses_reported_by_ec2(cloud, aws):
    make_group(aws, "ips", desired=3)
    ids = group_instances(aws, "ips", 3)
    reservations = aws["ec2"].describe_instances(InstanceIds=ids)["Reservations"]
    reported = {i["InstanceId"]: i for r in reservations for i in r["Instances"]}
    ips = {iid: reported[iid]["PrivateIpAddress"] for iid in ids}
    assert len(set(ips.values())) == 3 and "127.0.0.1" not in ips.values()
    for iid, ip in ips.items():
        assert ipaddress.ip_address(ip) in cloud.addresses.network
        assert reported[iid]["NetworkInterfaces"][0]["PrivateIpAddress"] == ip
        assert cloud.private_ip(iid) == ip
        with socket.socket() as sock:  # the instance can listen on it
            sock.bind((ip, 0))
    records = {r["instance_id"]: r["private_ip"] for r in cloud.instances("ips")}
    assert records == ips
    status, body, _ = get(f"{cloud.endpoint}/_localcloud/instances?group=ips")
    assert {r["instance_id"]: r["private_ip"] for r in json.loads(body)["instances"]} == ips
    # EC2's own filter finds an instance by that address
    found = aws["ec2"].describe_instances(Filters=[{"Name": "private-ip-address", "Values": [ips[ids[0]]]}])
    assert [i["InstanceId"] for r in found["Reservations"] for i in r["Instances"]] == [ids[0]]


def test_each_instance_has_a_signed_identity_document_that_verifies(cloud, aws):
    url, arn = make_queue(aws, "identity-hooks")
    make_group(aws, "iid", desired=0)
    put_hook(aws, arn, group="iid")
    aws["autoscaling"].set_desired_capacity(AutoScalingGroupName="iid", DesiredCapacity=2)
    ids = group_instances(aws, "iid", 2)
    status, cert, headers = get(f"{cloud.endpoint}/_localcloud/identity/certificate")
    assert status == 200 and cert.decode() == cloud.identity_certificate_pem
    assert cert.startswith(b"-----BEGIN CERTIFICATE-----")
    documents = {}
    for iid in ids:
        base = cloud.imds_url(iid)
        assert base == f"{cloud.endpoint}/_localcloud/imds/{iid}"
        status, document, headers = get(f"{base}/latest/dynamic/instance-identity/document")
        assert status == 200 and headers["Content-Type"] == "text/plain"
        status, signature, _ = get(f"{base}/latest/dynamic/instance-identity/signature")
        assert status == 200
        # "now" as a verifier against localcloud takes it: the Date of an AWS response (virtual clock)
        _, _, api_headers = get(f"{cloud.endpoint}/_localcloud/health")
        now = parsedate_to_datetime(api_headers["Date"])
        parsed = verify(document.decode(), signature.decode(), cert.decode(), instance_id=iid, now=now,
                        max_age_seconds=300)
        instance = aws["ec2"].describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
        assert parsed["privateIp"] == instance["PrivateIpAddress"] == cloud.private_ip(iid)
        assert parsed["imageId"] == instance["ImageId"] and parsed["instanceType"] == instance["InstanceType"]
        assert parsed["availabilityZone"] == instance["Placement"]["AvailabilityZone"]
        assert parsed["accountId"] == "123456789012" and parsed["region"] == cloud.region
        assert parsed["architecture"] == "x86_64" and parsed["version"] == "2017-09-30"
        launch = instance["LaunchTime"].replace(microsecond=0)
        assert parsed["pendingTime"] == launch.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        for item, expected in (("instance-id", iid), ("local-ipv4", parsed["privateIp"]),
                               ("placement/availability-zone", parsed["availabilityZone"])):
            assert get(f"{base}/latest/meta-data/{item}")[1].decode() == expected
        documents[iid] = (document.decode(), signature.decode())
    # one instance's document does not prove another's identity
    (first, second) = ids
    with pytest.raises(IdentityError) as err:
        verify(*documents[first], cert.decode(), instance_id=second, now=now, max_age_seconds=300)
    assert err.value.reason == "wrong-instance"
    # a day later on the cloud's clock the same document is too old
    cloud.advance(86400)
    _, _, api_headers = get(f"{cloud.endpoint}/_localcloud/health")
    with pytest.raises(IdentityError) as err:
        verify(*documents[first], cert.decode(), instance_id=first,
               now=parsedate_to_datetime(api_headers["Date"]), max_age_seconds=3600)
    assert err.value.reason == "too-old"


def test_metadata_of_unknown_or_terminated_instances_is_not_found(cloud, aws):
    make_group(aws, "gone", desired=1)
    (iid,) = group_instances(aws, "gone", 1)
    doc_url = f"{cloud.imds_url(iid)}/latest/dynamic/instance-identity/document"
    assert get(doc_url)[0] == 200
    assert get(f"{cloud.imds_url(iid)}/latest/meta-data/no-such-item")[0] == 404
    assert get(f"{cloud.imds_url('i-00000000deadbeef0')}/latest/dynamic/instance-identity/document")[0] == 404
    # without an agent that reboots, a reboot (EC2 or control API) succeeds and restarts nothing
    aws["ec2"].reboot_instances(InstanceIds=[iid])
    request = urllib.request.Request(f"{cloud.endpoint}/_localcloud/instances/{iid}/reboot", method="POST")
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert json.loads(resp.read()) == {"instance_id": iid, "rebooting": False}
    aws["autoscaling"].terminate_instance_in_auto_scaling_group(InstanceId=iid,
                                                                ShouldDecrementDesiredCapacity=True)
    wait_until(lambda: get(doc_url)[0] == 404, message="the terminated instance's IMDS to disappear")

