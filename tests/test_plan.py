"""Planning is a pure function of desired and observed state: tested without Docker."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from nebula.kinds.packages.diff import describe_changes, diff
from nebula.kinds.packages.types import (
    ContainerSpec,
    DesiredInstallation,
    NetworkSpec,
    Observed,
    ObservedContainer,
    ObservedNetwork,
    ObservedVolume,
    VolumeSpec,
)
from nebula.kinds.packages.types import Resource as Kind
from nebula.plan import Action


def installation(
    name: str, image: str = "wordpress:6.4-apache", env: str = "x"
) -> DesiredInstallation:
    web = ContainerSpec(
        installation=name,
        service="web",
        name=f"{name}-web",
        image=image,
        environment=(("MODE", env), ("PASSWORD", "••••0123456789ab")),  # a secret's stand-in
        restart="unless-stopped",
        networks=((f"{name}_default", ("web",)),),
    )
    return DesiredInstallation(
        name=name,
        source=f"packages/{name}.yaml",
        package=None,
        version=None,
        containers=(web,),
        networks=(NetworkSpec(name, f"{name}_default"),),
        volumes=(VolumeSpec(name, f"{name}_data"),),
    )


def observed_from(*desired: DesiredInstallation, state: str = "running") -> Observed:
    """What Docker would report after applying `desired`."""
    containers, networks, volumes = [], [], []
    for inst in desired:
        for i, c in enumerate(inst.containers):
            containers.append(
                ObservedContainer(
                    f"id-{c.name}-{i}",
                    c.name,
                    inst.name,
                    c.service,
                    c.spec_hash,
                    c.summary(),
                    state,
                )
            )
        networks += [ObservedNetwork(f"net-{n.name}", n.name, inst.name) for n in inst.networks]
        volumes += [ObservedVolume(v.name, inst.name) for v in inst.volumes]
    return Observed(tuple(containers), tuple(networks), tuple(volumes))


def test_everything_is_created_from_nothing() -> None:
    plan = diff([installation("blog")], Observed())
    assert [(c.action, c.kind, c.name) for c in plan.changes] == [
        (Action.CREATE, Kind.NETWORK, "blog_default"),
        (Action.CREATE, Kind.VOLUME, "blog_data"),
        (Action.CREATE, Kind.CONTAINER, "blog-web"),
    ]
    assert plan.changes[-1].reason == "new installation from packages/blog.yaml"


def test_unchanged_homelab_plans_no_changes() -> None:
    desired = [installation(f"app{i}") for i in range(50)]
    plan = diff(desired, observed_from(*desired))
    assert not plan.has_changes
    assert plan.counts()["noop"] == 150


def test_image_change_updates_that_container_with_a_readable_reason() -> None:
    before = installation("blog")
    after = [installation("blog", image="wordpress:6.5-apache"), installation("wiki")]
    plan = diff(after, observed_from(before, installation("wiki")))
    (change,) = plan.pending
    assert (change.action, change.name) == (Action.UPDATE, "blog-web")
    assert change.reason == "image changed wordpress:6.4-apache → wordpress:6.5-apache"
    assert change.observed_id == "id-blog-web-0"
    assert plan.installations() == ["blog"]


def test_secret_changes_are_reported_without_their_value() -> None:
    before = installation("blog")
    web = before.containers[0]
    changed = replace(web, environment=(("MODE", "x"), ("PASSWORD", "••••ba9876543210")))
    after = replace(before, containers=(changed,))
    (change,) = diff([after], observed_from(before)).pending
    assert change.reason == (
        "environment PASSWORD changed (secret ••••0123456789ab → ••••ba9876543210)"
    )


def test_removed_installation_loses_containers_and_network_but_keeps_volumes() -> None:
    blog, wiki = installation("blog"), installation("wiki")
    plan = diff([wiki], observed_from(blog, wiki))
    pending = [(c.action, c.kind, c.name) for c in plan.pending]
    assert pending == [
        (Action.DELETE, Kind.CONTAINER, "blog-web"),
        (Action.DELETE, Kind.NETWORK, "blog_default"),
    ]
    kept = [c for c in plan.changes if c.kind is Kind.VOLUME and c.installation == "blog"]
    assert kept[0].action is Action.NOOP and "kept" in kept[0].reason
    assert "no longer in the config repo" in plan.pending[0].reason


def test_removed_service_is_deleted() -> None:
    blog = installation("blog")
    extra = replace(blog.containers[0], service="cron", name="blog-cron")
    plan = diff([blog], observed_from(replace(blog, containers=(*blog.containers, extra))))
    (change,) = plan.pending
    assert (change.action, change.name, change.reason) == (
        Action.DELETE,
        "blog-cron",
        "service 'cron' was removed",
    )


def test_exited_container_that_should_run_is_recreated() -> None:
    blog = installation("blog")
    (change,) = diff([blog], observed_from(blog, state="exited")).pending
    assert change.action is Action.UPDATE
    assert "restart is unless-stopped" in change.reason


def test_exited_one_shot_container_is_left_alone() -> None:
    blog = installation("blog")
    job = replace(blog, containers=(replace(blog.containers[0], restart="no"),))
    assert not diff([job], observed_from(job, state="exited")).has_changes


def test_plan_is_deterministic_and_serialisable() -> None:
    desired = [installation("b"), installation("a")]
    first, second = diff(desired, Observed()), diff(desired, Observed())
    assert first == second
    data = first.to_dict()
    assert data["summary"] == {"create": 6, "update": 0, "delete": 0, "noop": 0}
    assert data["changes"][0] == {
        "action": "create",
        "kind": "network",
        "installation": "b",
        "name": "b_default",
        "reason": "new network",
    }


def test_describe_changes_lists_each_difference() -> None:
    old = {"image": "a:1", "environment": {"A": "1", "B": "2"}, "ports": ["1->1/tcp"]}
    new = {"image": "a:1", "environment": {"A": "1", "C": "3"}, "ports": ["2->1/tcp"]}
    assert describe_changes(old, new) == (
        "environment B removed; environment C added; ports changed [1->1/tcp] → [2->1/tcp]"
    )


def test_subnets_are_carved_from_the_pool_around_existing_networks() -> None:
    from ipaddress import IPv4Network

    import pytest

    from nebula.kinds.packages.subnets import PoolExhaustedError, free_subnet

    pool = IPv4Network("10.213.0.0/16")
    assert str(free_subnet(pool, 26, [])) == "10.213.0.0/26"
    used = ["172.17.0.0/16", "10.213.0.0/26", "10.213.0.64/27", "fd00::/64"]
    assert str(free_subnet(pool, 26, used)) == "10.213.0.128/26"
    assert str(free_subnet(pool, 26, ["10.213.0.0/24"])) == "10.213.1.0/26"
    with pytest.raises(PoolExhaustedError, match=r"widen defaults\.subnet_pool"):
        free_subnet(IPv4Network("10.9.0.0/26"), 26, ["10.9.0.0/16"])


def test_local_routes_are_read_from_the_kernel_table(tmp_path: Path) -> None:
    from nebula.kinds.packages.subnets import local_routes

    table = tmp_path / "route"
    table.write_text(
        "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n"
        "eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
        "br-1\t0000D50A\t00000000\t0001\t0\t0\t0\tC0FFFFFF\t0\t0\t0\n"
        "wg0\t0000400A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n"
    )
    if sys.byteorder == "little":
        assert local_routes(table) == ["10.213.0.0/26", "10.64.0.0/16"]
    assert local_routes(tmp_path / "missing") == []
