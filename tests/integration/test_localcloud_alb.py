"""localcloud's target groups follow their Auto Scaling group (register when InService, drain for the
deregistration delay before the instance terminates), and an NGINX on 127.0.0.1 playing the ALB follows
the target group's healthy targets while a steady client counts the requests it loses. Real moto, real
boto3, real NGINX, real HTTP servers as instances."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from devtools.alb import LoadBalancer, SteadyClient, healthy_targets, render_http
from localcloud import LocalCloud
from localcloud.testing import client, wait_until
from tests.support.http_instances import HttpInstances

AMI = "ami-12c6146b"


def target_group(aws: dict[str, Any], delay: int = 30) -> str:
    vpc = aws["ec2"].describe_vpcs()["Vpcs"][0]["VpcId"]
    arn = aws["elbv2"].create_target_group(
        Name="web", Protocol="HTTP", Port=8080, VpcId=vpc, HealthCheckPath="/", HealthCheckIntervalSeconds=5,
        HealthyThresholdCount=2)["TargetGroups"][0]["TargetGroupArn"]
    aws["elbv2"].modify_target_group_attributes(
        TargetGroupArn=arn, Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": str(delay)}])
    return arn


def group(aws: dict[str, Any], tg_arn: str, desired: int) -> None:
    aws["ec2"].create_launch_template(LaunchTemplateName="web-lt",
                                      LaunchTemplateData={"ImageId": AMI, "InstanceType": "t3.micro"})
    aws["autoscaling"].create_auto_scaling_group(
        AutoScalingGroupName="web", MinSize=0, MaxSize=4, DesiredCapacity=desired,
        LaunchTemplate={"LaunchTemplateName": "web-lt", "Version": "$Latest"}, AvailabilityZones=["us-east-1a"],
        TargetGroupARNs=[tg_arn])


def health(aws: dict[str, Any], tg_arn: str) -> dict[str, str]:
    return {d["Target"]["Id"]: d["TargetHealth"]["State"]
            for d in aws["elbv2"].describe_target_health(TargetGroupArn=tg_arn)["TargetHealthDescriptions"]}


def state(cloud: LocalCloud, instance_id: str) -> str:
    return next(r["state"] for r in cloud.instances() if r["instance_id"] == instance_id)


def clients(cloud: LocalCloud) -> dict[str, Any]:
    return {name: client(cloud.endpoint, name) for name in ("autoscaling", "ec2", "elbv2", "sqs")}


def test_target_group_follows_the_lifecycle() -> None:
    """Pending:Wait is never a target; InService -> initial -> healthy; Terminating -> draining for the
    delay, and only then the TERMINATING hook; a client's DeregisterTargets drains and is not undone.
    The clock nearly stands still (rate 0.001): only advance() moves it, so a slow machine cannot add the
    second that turned "initial" into "healthy" before the check (it did once in CI, at rate 1)."""
    with LocalCloud(boot_seconds=1, clock_rate=0.001) as cloud:
        aws = clients(cloud)
        tg = target_group(aws, delay=30)
        queue = aws["sqs"].create_queue(QueueName="hooks")["QueueUrl"]
        queue_arn = aws["sqs"].get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        group(aws, tg, desired=0)
        for name, transition in (("provision", "LAUNCHING"), ("retire", "TERMINATING")):
            aws["autoscaling"].put_lifecycle_hook(
                AutoScalingGroupName="web", LifecycleHookName=name, HeartbeatTimeout=300, DefaultResult="ABANDON",
                LifecycleTransition=f"autoscaling:EC2_INSTANCE_{transition}", NotificationTargetARN=queue_arn,
                RoleARN="arn:aws:iam::123456789012:role/hooks")
        aws["autoscaling"].set_desired_capacity(AutoScalingGroupName="web", DesiredCapacity=1)
        first = cloud.instances("web")[0]["instance_id"]
        cloud.advance(2)
        assert state(cloud, first) == "Pending:Wait"
        assert health(aws, tg) == {}, "an instance waiting in its launch hook must not receive traffic"

        aws["autoscaling"].complete_lifecycle_action(AutoScalingGroupName="web", LifecycleHookName="provision",
                                                     InstanceId=first, LifecycleActionResult="CONTINUE")
        cloud.run_timers()
        assert health(aws, tg) == {first: "initial"}
        cloud.advance(9)  # HealthyThresholdCount 2 x interval 5 = 10 s
        assert health(aws, tg) == {first: "initial"}
        cloud.advance(1.5)
        assert health(aws, tg) == {first: "healthy"}

        aws["autoscaling"].terminate_instance_in_auto_scaling_group(InstanceId=first,
                                                                    ShouldDecrementDesiredCapacity=True)
        assert state(cloud, first) == "Terminating"
        assert health(aws, tg) == {first: "draining"}
        cloud.advance(25)
        assert state(cloud, first) == "Terminating", "the TERMINATING hook waits for the deregistration"
        assert health(aws, tg) == {first: "draining"}
        cloud.advance(6)
        assert state(cloud, first) == "Terminating:Wait"
        assert health(aws, tg) == {}
        described = aws["elbv2"].describe_target_health(TargetGroupArn=tg, Targets=[{"Id": first}])
        assert described["TargetHealthDescriptions"][0]["TargetHealth"]["State"] == "unused"
        aws["autoscaling"].complete_lifecycle_action(AutoScalingGroupName="web", LifecycleHookName="retire",
                                                     InstanceId=first, LifecycleActionResult="CONTINUE")
        assert state(cloud, first) == "Terminated"

        aws["autoscaling"].set_desired_capacity(AutoScalingGroupName="web", DesiredCapacity=1)
        second = next(r["instance_id"] for r in cloud.instances("web") if r["state"] != "Terminated")
        cloud.advance(2)
        aws["autoscaling"].complete_lifecycle_action(AutoScalingGroupName="web", LifecycleHookName="provision",
                                                     InstanceId=second, LifecycleActionResult="CONTINUE")
        cloud.run_timers()  # registration happens on the next tick after InService
        cloud.advance(11)
        assert health(aws, tg) == {second: "healthy"}
        aws["elbv2"].deregister_targets(TargetGroupArn=tg, Targets=[{"Id": second}])
        assert health(aws, tg) == {second: "draining"}
        cloud.advance(31)
        assert health(aws, tg) == {}, "the group must not register again a target a client deregistered"
        assert state(cloud, second) == "InService"


def test_render_refuses_nothing_and_answers_503_without_targets() -> None:
    assert "return 503" in render_http(8000, [], 1)
    text = render_http(8000, [("127.0.5.6", 80), ("127.0.5.7", 80)], 2)
    assert "server 127.0.5.6:80;" in text and "server 127.0.5.7:80;" in text
    assert "proxy_next_upstream off" in text
    assert healthy_targets([
        {"Target": {"Id": "i-1", "Port": 80}, "TargetHealth": {"State": "healthy"}},
        {"Target": {"Id": "i-2", "Port": 80}, "TargetHealth": {"State": "draining"}},
        {"Target": {"Id": "i-3", "Port": 80}, "TargetHealth": {"State": "initial"}},
    ]) == [("i-1", 80)]


class _Named(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        body = self.server.name.encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_the_first_request_after_apply_sees_the_applied_targets(tmp_path: Path) -> None:
    """After ``apply`` returns, no worker of an older generation answers: alternate two upstreams 40 times
    and send one request right after each switch. (Waiting only for the generation answer let an old
    worker that had not yet handled QUIT answer with the old config, 129 times in 200 switches.)"""
    servers = []
    for name in ("a", "b"):
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Named)
        server.name = name  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    try:
        alb = LoadBalancer(tmp_path / "alb", "http://127.0.0.1:1", "arn:unused")  # apply() only: no AWS call
        alb.nginx.start(port=alb.port)
        try:
            stale = []
            for switch in range(40):
                server = servers[switch % 2]
                alb.apply({server.name: server.server_address[:2]})  # type: ignore[attr-defined]
                conn = http.client.HTTPConnection("127.0.0.1", alb.port, timeout=5)
                conn.request("GET", "/")
                answer = conn.getresponse().read().decode()
                conn.close()
                if answer != server.name:  # type: ignore[attr-defined]
                    stale.append((switch, answer))
            assert stale == []
        finally:
            alb.nginx.stop()
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


@pytest.fixture
def instances() -> Iterator[HttpInstances]:
    agent = HttpInstances()
    yield agent
    agent.close()


def test_alb_loses_no_request_while_the_group_is_replaced(tmp_path: Path, instances: HttpInstances) -> None:
    """Two instances are replaced one after the other behind the NGINX ALB: every request succeeds,
    the new instances serve, the old ones stopped receiving traffic before their servers stopped. Then
    a crash of a routed instance (no deregistration) shows up as failed requests: the count is real."""
    with LocalCloud(boot_seconds=2, clock_rate=10, agent=instances) as cloud:
        aws = clients(cloud)
        tg = target_group(aws, delay=30)  # 3 s real at rate 10
        group(aws, tg, desired=2)
        old = [r["instance_id"] for r in cloud.instances("web")]
        with LoadBalancer(tmp_path / "alb", cloud.endpoint, tg) as alb:  # routes to each PrivateIpAddress
            alb.wait_routed(lambda routed: routed == set(old))
            with SteadyClient(alb.url) as traffic:
                wait_until(lambda: set(traffic.served_by) == set(old), timeout=20, message="both instances serve")
                for victim in old:
                    aws["autoscaling"].terminate_instance_in_auto_scaling_group(
                        InstanceId=victim, ShouldDecrementDesiredCapacity=False)
                    wait_until(lambda: state(cloud, victim) == "Terminated", timeout=30, message=f"{victim} gone")
                    alb.wait_routed(lambda routed: len(routed) == 2 and victim not in routed)
                new = alb.routed()
                wait_until(lambda: set(traffic.served_by) >= new, timeout=20, message="the new instances serve")
                assert not new & set(old)
                before = traffic.total
                wait_until(lambda: traffic.total > before + 20, timeout=20, message="more traffic")
            assert traffic.failed == 0, traffic.failures[:5]
            assert traffic.ok > 100
            for victim in old:
                assert traffic.last_served[victim] < instances.stopped_at[victim]
            assert not alb.errors and not alb.refused
            assert all(host.startswith("127.") and host != "127.0.0.1" for host, _ in alb.upstreams.values())

            with SteadyClient(alb.url) as traffic:
                instances.crash(sorted(new)[0])
                wait_until(lambda: traffic.failed > 0 and traffic.ok > 0, timeout=20,
                           message="failed requests (the crashed instance) beside answered ones")
