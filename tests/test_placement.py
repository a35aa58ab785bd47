"""Several nodes in one repo: where each installation is placed (`node:`, `placement:`
selectors, spreading), what each node plans, moves between nodes, and routes that dial a node's
published port. Pure: loaded from files and diffed against observed state, without servers."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nebula.cli.app import app
from nebula.engine.load import load_desired
from nebula.errors import ConfigError
from nebula.kinds.base import Desired
from nebula.kinds.packages.diff import Snapshot, moving
from nebula.kinds.packages.subnets import node_pool
from nebula.kinds.packages.types import (
    Observed,
    ObservedContainer,
    ObservedNetwork,
    ObservedVolume,
)
from nebula.kinds.routes.desired import upstreams
from nebula.plan import Action

NODES = """nodes:
  - {name: nas, address: 10.0.0.2, labels: {disk: ssd}}
  - {name: pi, address: 10.0.0.3, labels: {disk: sd, zone: attic}}
  - {name: rig, address: 10.0.0.4, gpu: true, labels: {disk: ssd}}
"""

APP = """compose:
  services:
    web:
      image: nginx:1.27
"""


def write_repo(root: Path, packages: dict[str, str], config: str = NODES) -> Path:
    (root / "packages").mkdir(parents=True, exist_ok=True)
    for old in (root / "packages").glob("*.yaml"):
        old.unlink()
    (root / "nebula.yaml").write_text(config)
    for name, text in packages.items():
        (root / "packages" / f"{name}.yaml").write_text(text)
    return root


def placed(root: Path) -> dict[str, str]:
    return {i.name: i.node for i in load_desired(root).installations}


def errors_of(root: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_desired(root)
    return [str(issue) for issue in caught.value.issues]


def test_node_and_no_node_place_as_written(tmp_path: Path) -> None:
    write_repo(tmp_path, {"a": APP, "b": "node: pi\n" + APP})
    assert placed(tmp_path) == {"a": "nas", "b": "pi"}  # no node: the first


def test_a_selector_matches_labels_and_gpu(tmp_path: Path) -> None:
    write_repo(
        tmp_path,
        {
            "ai": "placement: {gpu: true}\n" + APP,
            "attic": "placement: {zone: attic}\n" + APP,
            "plain": "placement: {gpu: false, disk: ssd}\n" + APP,
        },
    )
    assert placed(tmp_path) == {"ai": "rig", "attic": "pi", "plain": "nas"}


def test_a_selector_spreads_over_the_matching_nodes_by_name_order(tmp_path: Path) -> None:
    selected = "placement: {disk: ssd}\n" + APP
    # `pinned` is placed first (node: counts before selectors); then a, b, c in name order,
    # each on the matching node with the fewest, the first in nebula.yaml on a tie
    write_repo(tmp_path, {"c": selected, "a": selected, "b": selected, "pinned": APP})
    assert placed(tmp_path) == {"a": "rig", "b": "nas", "c": "rig", "pinned": "nas"}
    # the same repo places the same way every time, on every node
    assert placed(tmp_path) == placed(tmp_path)


def test_placement_problems_are_reported_at_their_line_with_what_is_valid(
    tmp_path: Path,
) -> None:
    write_repo(
        tmp_path,
        {
            "both": "# both\nnode: nas\nplacement: {gpu: true}\n" + APP,
            "gpu": "placement: {gpu: maybe}\n" + APP,
        },
    )
    assert errors_of(tmp_path) == [
        "packages/both.yaml:3:1: placement: give `node:` (one node) or `placement:` (a "
        "selector of nodes), not both",
        "packages/gpu.yaml:1:13: placement.gpu: `gpu:` is true or false",
    ]
    nodes = (
        "the nodes: nas (gpu: false, disk: ssd); pi (gpu: false, disk: sd, zone: attic); rig "
        "(gpu: true, disk: ssd). Give a node the labels in nebula.yaml, or change the selector"
    )
    write_repo(
        tmp_path,
        {
            "none": "placement: {zone: cellar}\n" + APP,
            "typo": "placement:\n  zonne: attic\n" + APP,
            "away": "node: nsa\n" + APP,
        },
    )
    assert errors_of(tmp_path) == [
        "packages/away.yaml:1:1: node: no node 'nsa' in nebula.yaml (nodes: nas, pi, rig)",
        "packages/none.yaml:1:1: placement: no node in nebula.yaml matches {zone: cellar}; "
        + nodes,
        "packages/typo.yaml:1:1: placement: no node in nebula.yaml matches {zonne: attic} (no "
        "node has a label 'zonne', did you mean 'zone'?); " + nodes,
    ]


GPU_APP = """compose:
  services:
    llm:
      image: ollama/ollama:0.5.7
      gpus: all
"""


def test_a_gpu_request_is_checked_on_the_node_a_selector_chose(tmp_path: Path) -> None:
    write_repo(tmp_path, {"llm": "placement: {disk: ssd}\n" + GPU_APP, "x": APP})
    # x takes nas; llm goes to the least loaded ssd node, rig, which has a GPU
    assert placed(tmp_path) == {"llm": "rig", "x": "nas"}
    write_repo(tmp_path, {"llm": "placement: {zone: attic}\n" + GPU_APP})
    assert errors_of(tmp_path) == [
        "packages/llm.yaml:6:7: compose.services.llm.gpus: service 'llm' requests a GPU, but "
        "node 'pi' has none; set `gpu: true` on that node in nebula.yaml or place this "
        "installation on a GPU node with `node:` or `placement: {gpu: true}`"
    ]


def test_a_dependency_on_another_node_is_refused_at_its_line(tmp_path: Path) -> None:
    write_repo(
        tmp_path,
        {
            "db": "node: pi\npackage: postgres\nvalues: {POSTGRES_PASSWORD: '${secret:PG}'}\n",
            "feeds": "package: miniflux\ndependencies: {postgres: db}\n"
            "values: {ADMIN_PASSWORD: '${secret:MF}'}\n",
        },
    )
    errors = errors_of(tmp_path)
    assert any(
        e.startswith("packages/feeds.yaml:2:")
        and "it depends on 'db', placed on node 'pi', but it is placed on 'nas'" in e
        for e in errors
    ), errors


def test_nodes_settings_are_checked_in_nebula_yaml(tmp_path: Path) -> None:
    config = """nodes:
  - name: a
    address: 10.0.0.2
    docker: http://10.0.0.2:2375
  - name: b
    address: 10.0.0.3
    subnet_pool: 10.9.0.0/28
proxy:
  node: c
"""
    write_repo(tmp_path, {}, config)
    errors = errors_of(tmp_path)
    assert errors[0].startswith("nebula.yaml:4:5: nodes[0].docker: ")
    assert "give ssh://user@host, tcp://host:port or unix:///path" in errors[0]
    fixed = config.replace("http://", "ssh://root@")
    write_repo(tmp_path, {}, fixed)
    assert errors_of(tmp_path) == [
        "nebula.yaml:7:5: nodes[1].subnet_pool: subnet_pool 10.9.0.0/28 is smaller than "
        "defaults.subnet_size /26; give a pool of /26 or larger"
    ]
    write_repo(tmp_path, {}, fixed.replace("/28", "/24"))
    assert errors_of(tmp_path) == [
        "nebula.yaml:9:3: proxy.node: no node 'c' in nebula.yaml (nodes: a, b)"
    ]
    write_repo(tmp_path, {}, fixed.replace("/28", "/24").replace("node: c", "node: b"))
    config_ = load_desired(tmp_path).repo.config
    a, b = config_.nodes
    assert (a.driven, b.driven) == (True, False)
    assert config_.edge.name == "b"
    assert node_pool(b, config_.defaults) == (b.subnet_pool, "subnet_pool of node b")
    assert node_pool(a, config_.defaults) == (config_.defaults.subnet_pool, "defaults.subnet_pool")


# -- what each node plans, and moves ---------------------------------------------------------


def observed_of(desired: Desired, *names: str) -> Observed:
    """What an engine runs once `names` are applied on it, as they are desired now."""
    containers, networks, volumes = [], [], []
    for inst in desired.installations:
        if inst.name not in names:
            continue
        for c in inst.containers:
            containers.append(
                ObservedContainer(
                    f"id-{c.name}",
                    c.name,
                    inst.name,
                    c.service,
                    c.spec_hash,
                    c.summary(),
                    "running",
                )
            )
        networks += [ObservedNetwork(f"net-{n.name}", n.name, inst.name) for n in inst.networks]
        volumes += [ObservedVolume(v.name, inst.name) for v in inst.volumes]
    return Observed(tuple(containers), tuple(networks), tuple(volumes))


VOLUMED = """compose:
  services:
    web:
      image: nginx:1.27
      volumes: ["data:/data"]
  volumes:
    data: {}
"""


def test_each_node_plans_only_its_installations(tmp_path: Path) -> None:
    write_repo(tmp_path, {"a": APP, "b": "node: pi\n" + APP, "c": "node: pi\n" + APP})
    desired = load_desired(tmp_path)
    on_nas = Snapshot.of(desired, Observed(), "nas")
    on_pi = Snapshot.of(desired, Observed(), "pi")
    assert on_nas.plan.installations() == ["a"]
    assert on_pi.plan.installations() == ["b", "c"]
    assert Snapshot.of(desired, Observed()).plan.installations() == ["a"]  # the first node
    # b and c run on pi as desired: nothing left to do there, and nas never sees them
    assert not Snapshot.of(desired, observed_of(desired, "b", "c"), "pi").plan.has_changes


def test_a_move_waits_for_the_new_node_then_removes_the_containers_and_keeps_the_volumes(
    tmp_path: Path,
) -> None:
    write_repo(tmp_path, {"keep": APP, "db": VOLUMED})
    before = load_desired(tmp_path)
    on_nas = observed_of(before, "keep", "db")  # both ran on nas
    write_repo(tmp_path, {"keep": APP, "db": "node: pi\n" + VOLUMED})
    desired = load_desired(tmp_path)
    assert moving(desired, on_nas, "nas") == ["db"]

    waiting = Snapshot.of(desired, on_nas, "nas", running={})
    assert not waiting.plan.has_changes  # nothing removed while pi does not run it
    (move,) = waiting.plan.moves
    assert (move.installation, move.to, move.ready) == ("db", "pi", False)
    assert move.note("nas") == (
        "db: moving to node pi; its containers here are removed once it runs there "
        "(volumes stay on nas)"
    )
    # pi runs it, according to the store: nas removes its container and network, never the volume
    ready = Snapshot.of(desired, on_nas, "nas", running={"db": "pi"})
    changes = {(c.action, c.kind.value, c.name): c.reason for c in ready.plan.pending}
    assert changes == {
        (Action.DELETE, "container", "db-web"): "moved to pi; volumes stay on nas",
        (Action.DELETE, "network", "db_default"): "no longer used",
    }
    (volume,) = [c for c in ready.plan.changes if c.kind.value == "volume"]
    assert volume.action is Action.NOOP
    assert volume.reason == "stays on nas: volumes do not move to node pi (docker volume rm)"
    # the store saying it runs elsewhere, or not yet running, is still a wait
    assert not Snapshot.of(desired, on_nas, "nas", running={"db": "rig"}).plan.has_changes


# -- routes with several nodes ---------------------------------------------------------------

EXPOSED = """node: {node}
expose:
  - {{host: app.example.test, port: 80}}
compose:
  services:
    web:
      image: nginx:1.27
      ports: [{ports}]
"""


def test_with_several_nodes_a_route_dials_the_node_at_its_published_port(tmp_path: Path) -> None:
    write_repo(tmp_path, {"app": EXPOSED.format(node="pi", ports='"8081:80", "9000:9000"')})
    desired = load_desired(tmp_path)
    (route,) = desired.routes
    assert route.dial == "10.0.0.3:8081"
    assert upstreams(desired.routes, Observed()) == {route.id: "10.0.0.3:8081"}
    # one node: Caddy dials the container's address, as observed; nothing need be published
    one = "nodes:\n  - {name: nas, address: 10.0.0.2}\n"
    write_repo(tmp_path, {"app": EXPOSED.format(node="nas", ports="")}, one)
    (route,) = load_desired(tmp_path).routes
    assert route.dial is None


def test_with_several_nodes_an_unpublished_exposed_port_is_an_error_at_the_expose(
    tmp_path: Path,
) -> None:
    write_repo(
        tmp_path,
        {
            "app": EXPOSED.format(node="pi", ports='"80"'),  # Docker would pick the host port
            "lo": EXPOSED.format(node="pi", ports='"127.0.0.1:8082:80"').replace(
                "app.example", "lo.example"
            ),
        },
    )
    message = (
        "expose[0].port: with several nodes, Caddy on the edge node dials the node 'pi' at a "
        "host port: publish container port 80 of 'web' with a fixed host port, e.g. ports: "
        '["80:80"]'
    )
    assert errors_of(tmp_path) == [
        f"packages/app.yaml:3:30: {message}",
        f"packages/lo.yaml:3:29: {message}",
    ]


def test_plan_for_an_unknown_node_names_the_nodes(tmp_path: Path) -> None:
    write_repo(tmp_path, {"a": APP})
    result = CliRunner().invoke(app, ["plan", str(tmp_path), "--node", "nsa"])
    assert result.exit_code == 2
    assert "no node 'nsa' in nebula.yaml (nodes: nas, pi, rig)" in result.output


def test_desired_installations_carry_their_node(tmp_path: Path) -> None:
    write_repo(tmp_path, {"a": "placement: {gpu: true}\n" + APP})
    (a,) = load_desired(tmp_path).installations
    assert a.node == "rig"
    assert replace(a, node="pi").spec_hash == a.spec_hash  # moving changes no container
