"""Per-instance status of a managed group: lifecycle state, age, launch version, past max age."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

from phoenix.aws import AWS
from phoenix.rebuild.target import launch_spec


def version_label(spec: Mapping[str, Any]) -> str:
    """``web-lt:3`` for a launch template version, ``lc:<name>`` for a launch configuration."""
    if spec.get("LaunchConfigurationName"):
        return f"lc:{spec['LaunchConfigurationName']}"
    name = spec.get("LaunchTemplateName") or spec.get("LaunchTemplateId") or "?"
    return f"{name}:{spec.get('Version', '?')}" if spec else "-"


def launch_times(aws: AWS, instance_ids: Iterable[str], cache: dict[str, datetime] | None = None) -> dict[str, datetime]:
    """EC2 LaunchTime per instance id (UTC). Uses and fills ``cache``; one call per 100 unknown ids."""
    cache = {} if cache is None else cache
    missing = [i for i in instance_ids if i not in cache]
    for start in range(0, len(missing), 100):
        chunk = missing[start:start + 100]
        reservations = aws.paginate("ec2", "describe_instances", "Reservations",
                                    f"instances {','.join(chunk)}", InstanceIds=chunk)
        for res in reservations:
            for inst in res.get("Instances", []):
                lt = inst.get("LaunchTime")
                if isinstance(lt, datetime):
                    cache[inst["InstanceId"]] = lt.astimezone(timezone.utc)
    return cache


def rows(
    group_data: Mapping[str, Any],
    launched: Mapping[str, datetime],
    now: datetime,
    max_age: float,
) -> list[dict[str, Any]]:
    """One row per instance of ``group_data`` (a DescribeAutoScalingGroups entry), sorted oldest first."""
    out = []
    for inst in group_data.get("Instances", []):
        iid = inst["InstanceId"]
        lt = launched.get(iid)
        age = (now - lt).total_seconds() if lt else None
        spec = inst.get("LaunchTemplate") or (
            {"LaunchConfigurationName": inst["LaunchConfigurationName"]} if inst.get("LaunchConfigurationName") else {}
        )
        out.append({
            "instance_id": iid,
            "lifecycle_state": inst.get("LifecycleState"),
            "health": inst.get("HealthStatus"),
            "launch_time": lt.isoformat() if lt else None,
            "age_seconds": round(age, 1) if age is not None else None,
            "launch_version": version_label(spec),
            "past_max_age": bool(age is not None and age >= max_age),
            "time_left_seconds": round(max_age - age, 1) if age is not None else None,
        })
    out.sort(key=lambda r: -(r["age_seconds"] or 0))
    return out


def summarise(instance_rows: list[dict[str, Any]], group_data: Mapping[str, Any], max_age: float,
              now: datetime) -> dict[str, Any]:
    """The ``rebuild.status`` return: counts, oldest age, group launch version and the rows."""
    ages = [r["age_seconds"] for r in instance_rows if r["age_seconds"] is not None]
    return {
        "group": group_data.get("AutoScalingGroupName"),
        "group_launch_version": version_label(launch_spec(dict(group_data))),
        "desired": group_data.get("DesiredCapacity"),
        "min_size": group_data.get("MinSize"),
        "max_size": group_data.get("MaxSize"),
        "count": len(instance_rows),
        "in_service": sum(1 for r in instance_rows if r["lifecycle_state"] == "InService"),
        "past_max_age": sum(1 for r in instance_rows if r["past_max_age"]),
        "oldest_age_seconds": max(ages) if ages else None,
        "max_age_seconds": max_age,
        "now": now.isoformat(),
        "instances": instance_rows,
    }


def collect(aws: AWS, group: str, max_age: float, cache: dict[str, datetime] | None = None,
            group_data: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Describe ``group`` now and return :func:`summarise` of it."""
    if group_data is None:
        from phoenix.rebuild.target import describe_group

        group_data = describe_group(aws, group)
    ids = [i["InstanceId"] for i in group_data.get("Instances", [])]
    launched = launch_times(aws, ids, cache)
    now = aws.server_time()
    return summarise(rows(group_data, launched, now, max_age), group_data, max_age, now)


def report(aws: AWS, target: Any, options: Any, patch_reports: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``rebuild.status``: :func:`collect` plus when the next cycle is due, the plan, the lock and the history;
    with ``patch_reports`` (instance id -> ``phoenix_patches.pending`` report, from the mine) each row's
    patch lag and whether pending security updates make a cycle due early (``security``).

    Read-only: the group, its instances, lifecycle hooks, instance refreshes and (for a stack) the template.
    """
    from phoenix.patches import lag
    from phoenix.rebuild import cycle, history, preflight, schedule

    out = collect(aws, target.group, options.max_age, group_data=target.group_data)
    now = datetime.fromisoformat(out["now"])
    if patch_reports is not None:
        for row in out["instances"]:
            row.update(lag.instance_lag(patch_reports.get(row["instance_id"]), now))
        out["security"] = lag.assess(out["instances"], now, options.security_threshold,
                                     history.from_tags(target.group_data.get("Tags", [])),
                                     enabled=options.security_rebuild)
    facts = preflight.gather(aws, target)
    plan = cycle.plan_for(options, target, facts, out["count"] or int(target.group_data.get("DesiredCapacity") or 0))
    launched = [datetime.fromisoformat(r["launch_time"]) for r in out["instances"] if r["launch_time"]]
    out["schedule"] = schedule.due(options, plan, min(launched) if launched else None, now)
    out["plan"] = plan.as_dict()
    assessment = facts.lock_assessment(options)
    out["lock"] = assessment.as_dict(now)
    out["history"] = [e.as_dict() for e in history.from_tags(target.group_data.get("Tags", []))]
    out["stack"] = target.stack
    return out
