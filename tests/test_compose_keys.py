"""Compose keys people copy from the web: each works with compose's meaning, or is refused at
its line with why and what to do instead. Loading is checked without servers; what reaches the
container is checked on the real engine with `docker inspect`."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import docker
import pytest
from typer.testing import CliRunner

import servers
from nebula.cli.app import app
from nebula.engine.load import load_desired
from nebula.errors import ConfigError
from nebula.kinds.packages.types import ContainerSpec, PortBinding


def write_app(root: Path, compose: str, name: str = "app") -> Path:
    (root / "packages").mkdir(parents=True, exist_ok=True)
    (root / "nebula.yaml").write_text("")
    (root / "packages" / f"{name}.yaml").write_text(compose)
    return root


def containers_of(root: Path) -> dict[str, ContainerSpec]:
    (installation,) = load_desired(root).installations
    return {c.service: c for c in installation.containers}


def errors_of(root: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_desired(root)
    return [str(issue) for issue in caught.value.issues]


def test_unsupported_keys_are_refused_at_their_line_with_why_and_what_instead(
    tmp_path: Path,
) -> None:
    write_app(
        tmp_path,
        """compose:
  services:
    web:
      image: nginx:1.27
      build: {context: ., ssh: [default]}
      label_file: .labels
      scale: 2
      links: [db]
      uts: host
      volumes_from: [db]
  secrets:
    db_password: {file: ./db_password.txt}
""",
    )
    errors = errors_of(tmp_path)
    assert errors == [
        "packages/app.yaml:5:27: compose.services.web.build.ssh: 'ssh' is a compose key Nebula "
        "does not support yet: no SSH agent is forwarded to builds; put what the build fetches "
        "into the context folder",
        "packages/app.yaml:6:7: compose.services.web.label_file: 'label_file' is a compose key "
        "Nebula does not support yet: label files are not read (env_file and configs are); list "
        "the labels under `labels:`",
        "packages/app.yaml:7:7: compose.services.web.scale: 'scale' is a compose key Nebula "
        "does not support yet: Nebula runs one container per service; declare another service "
        "for more",
        "packages/app.yaml:8:7: compose.services.web.links: 'links' is a compose key Nebula "
        "does not support yet: every service is reachable by its name on the installation's "
        "network; use that",
        "packages/app.yaml:9:7: compose.services.web.uts: 'uts' is a compose key Nebula does "
        "not support yet: it gives the container powers over the host, which Nebula does not "
        "grant yet; run the app without it, or outside Nebula",
        "packages/app.yaml:10:7: compose.services.web.volumes_from: 'volumes_from' is a compose "
        "key Nebula does not support yet: mount the same named volume in both services",
        "packages/app.yaml:12:19: compose.secrets.db_password.file: 'file' is a compose key "
        "Nebula does not support yet: a secret kept as a file of the config repo is plain text "
        "in git; store it in the vault (`nebula secrets set NAME < FILE`) and declare it "
        "`external: true`",
    ]
    assert not any("did you mean" in e for e in errors)


def test_a_misspelt_key_gets_a_suggestion_only_when_the_value_fits_it(tmp_path: Path) -> None:
    write_app(
        tmp_path,
        """compose:
  services:
    web:
      image: nginx:1.27
      enviroment: {TZ: UTC}
      volume: data:/data
""",
    )
    first, second = errors_of(tmp_path)
    assert first == (
        "packages/app.yaml:5:7: compose.services.web.enviroment: unknown field; "
        "did you mean 'environment'?"
    )
    # `volumes` takes a list, never a word: no suggestion, the valid fields
    assert second.startswith("packages/app.yaml:6:7: compose.services.web.volume: unknown field;")
    assert "did you mean" not in second and "valid fields: build, cap_add, cap_drop," in second


def test_version_name_extensions_and_develop_are_ignored_as_compose_ignores_them(
    tmp_path: Path,
) -> None:
    write_app(
        tmp_path,
        """compose:
  version: "3.8"
  name: someone-elses-project
  x-common: &common {restart: unless-stopped}
  services:
    web:
      image: nginx:1.27
      x-note: anything
      develop: {watch: [{action: sync, path: ./src, target: /src}]}
""",
    )
    (installation,) = load_desired(tmp_path).installations
    assert installation.name == "app"  # the file's name, not compose's `name:`
    assert [c.name for c in installation.containers] == ["app-web"]


def test_port_ranges_and_upper_case_protocols_publish_each_port(tmp_path: Path) -> None:
    write_app(
        tmp_path,
        """compose:
  services:
    dns:
      image: nginx:1.27
      ports: ["53:53/UDP", "8000-8002:9000-9002", "7000-7001", "127.0.0.1:6000:6000/TCP"]
      expose: ["3000", "4000-4001/udp", 5000]
""",
    )
    dns = containers_of(tmp_path)["dns"]
    assert dns.ports == (
        PortBinding(53, "udp", "0.0.0.0", 53),
        PortBinding(9000, "tcp", "0.0.0.0", 8000),
        PortBinding(9001, "tcp", "0.0.0.0", 8001),
        PortBinding(9002, "tcp", "0.0.0.0", 8002),
        PortBinding(7000, "tcp", "0.0.0.0", None),
        PortBinding(7001, "tcp", "0.0.0.0", None),
        PortBinding(6000, "tcp", "127.0.0.1", 6000),
    )
    assert dns.expose == ("3000/tcp", "4000/udp", "4001/udp", "5000/tcp")


def test_ranges_of_different_lengths_are_refused(tmp_path: Path) -> None:
    write_app(
        tmp_path,
        """compose:
  services:
    web:
      image: nginx:1.27
      ports: ["8000-8010:80", "90-80:90-80", "8000-8001:80-82"]
""",
    )
    assert errors_of(tmp_path) == [
        "packages/app.yaml:5:15: compose.services.web.ports[0]: port '8000-8010:80': "
        "a host port range for one container port is not supported; give one host port",
        "packages/app.yaml:5:31: compose.services.web.ports[1]: port range '90-80' ends before "
        "it starts",
        "packages/app.yaml:5:46: compose.services.web.ports[2]: port '8000-8001:80-82': "
        "the host and container ranges must have as many ports",
    ]


def test_services_with_profiles_are_not_started(tmp_path: Path) -> None:
    app_yaml = """compose:
  services:
    web:
      image: nginx:1.27
    debug:
      image: busybox:1.36
      profiles: [debug]
"""
    write_app(tmp_path, app_yaml)
    assert list(containers_of(tmp_path)) == ["web"]
    write_app(tmp_path, app_yaml.replace("nginx:1.27", "nginx:1.27\n      depends_on: [debug]"))
    assert errors_of(tmp_path) == [
        "packages/app.yaml:5:7: compose.services.web.depends_on: service 'debug' has "
        "`profiles:`, so it is not started (as compose, without a profile asked for); remove "
        "its `profiles:`"
    ]


def test_limits_and_sizes_read_compose_units_after_interpolation(tmp_path: Path) -> None:
    write_app(
        tmp_path,
        """compose:
  services:
    web:
      image: nginx:1.27
      shm_size: ${SHM:-64m}
      deploy: {resources: {limits: {cpus: "0.5", memory: 1.5g, pids: 100}}}
    worker:
      image: nginx:1.27
      mem_limit: 512MiB
      cpus: 2
    bad:
      image: nginx:1.27
      shm_size: lots
      mem_limit: 1g
      deploy: {resources: {limits: {memory: 2g}}}
""",
    )
    assert errors_of(tmp_path) == [
        "packages/app.yaml:13:7: compose.services.bad.shm_size: 'lots' is not a size; "
        "use e.g. 512m, 2g or a number of bytes",
        "packages/app.yaml:14:7: compose.services.bad.mem_limit: mem_limit differs from "
        "deploy.resources.limits.memory; give one",
    ]
    text = (tmp_path / "packages" / "app.yaml").read_text()
    (tmp_path / "packages" / "app.yaml").write_text(text.split("    bad:")[0])
    web, worker = containers_of(tmp_path).values()
    assert (web.cpus, web.memory, web.pids, web.shm_size) == (0.5, 1536 << 20, 100, 64 << 20)
    assert (worker.cpus, worker.memory) == (2.0, 512 << 20)


def test_container_name_is_an_alias_and_two_services_may_not_share_one(tmp_path: Path) -> None:
    app_yaml = """compose:
  services:
    db:
      image: postgres:16
      container_name: postgres
    web:
      image: nginx:1.27
"""
    write_app(tmp_path, app_yaml)
    db = containers_of(tmp_path)["db"]
    assert (db.name, db.networks) == ("app-db", (("app_default", ("db", "postgres")),))
    write_app(tmp_path, app_yaml + "      container_name: postgres\n")
    assert errors_of(tmp_path) == [
        "packages/app.yaml:8:7: compose.services.web.container_name: service 'db' has this "
        "container_name too; give each its own"
    ]


def test_containers_made_before_these_keys_keep_their_hash(tmp_path: Path) -> None:
    """A container whose app uses none of the newer keys is not recreated by an upgrade: its
    summary (whose hash is in its label) has exactly the keys it always had."""
    write_app(tmp_path, "compose:\n  services:\n    web:\n      image: nginx:1.27\n")
    assert set(containers_of(tmp_path)["web"].summary()) == {
        "image",
        "command",
        "entrypoint",
        "environment",
        "ports",
        "volumes",
        "healthcheck",
        "restart",
        "labels",
        "networks",
        "init",
        "user",
        "working_dir",
    }


def test_a_secret_may_not_end_up_where_docker_shows_it(tmp_path: Path) -> None:
    write_app(
        tmp_path,
        """compose:
  services:
    web:
      image: nginx:1.27
      hostname: ${secret:web.host}
""",
    )
    assert errors_of(tmp_path) == [
        "packages/app.yaml:5:7: compose.services.web.hostname: a secret cannot be used in "
        "hostname: pass it as environment (or in command, entrypoint, healthcheck)"
    ]


def _two_free_ports() -> int:
    """A free port whose next port is free too."""
    while True:
        low = servers.free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("0.0.0.0", low + 1))
            except OSError:
                continue
        return low


EVERYTHING = """compose:
  services:
    app:
      image: {image}
      command: [sleep, "3600"]
      init: true
      container_name: legacy-name
      hostname: app.internal
      platform: linux/amd64
      stop_signal: SIGUSR1
      stop_grace_period: 1m30s
      stdin_open: true
      tty: true
      expose: ["3000", "4000/udp"]
      ports: ["{low}-{high}:8000-8001", "{udp}:53/UDP"]
      extra_hosts: ["db.local:10.0.0.5", "gw=host-gateway"]
      dns: [9.9.9.9]
      tmpfs: ["/scratch:size=65536"]
      shm_size: 128m
      ulimits: {{nofile: {{soft: 1024, hard: 2048}}, nproc: 512}}
      logging: {{driver: json-file, options: {{max-size: 1m}}}}
      healthcheck: {{disable: true}}
      deploy: {{resources: {{limits: {{cpus: "0.5", memory: 256m, pids: 64}}}}}}
      read_only: true
      cap_drop: [NET_RAW]
      security_opt: [no-new-privileges]
      domainname: home.lan
      dns_search: home.lan
      dns_opt: [ndots:1]
    peer:
      image: {image}
      command: [sleep, "3600"]
      init: true
"""


def test_the_keys_reach_the_container_as_docker_inspect_shows(
    tmp_path: Path, docker_host: str, test_image: str
) -> None:
    low, udp = _two_free_ports(), servers.free_port()
    write_app(
        tmp_path,
        EVERYTHING.format(image=test_image, low=low, high=low + 1, udp=udp),
    )
    cli = CliRunner()
    engine_url = ["--docker-host", docker_host]
    database = [*engine_url, "--database-url", f"sqlite:///{tmp_path}/n.db"]
    result = cli.invoke(app, ["apply", str(tmp_path), *database])
    assert result.exit_code == 0, result.output
    engine = docker.APIClient(base_url=docker_host, version=servers.DOCKER_API_VERSION)
    info = engine.inspect_container("app-app")  # Nebula's name; container_name is an alias
    config, host = info["Config"], info["HostConfig"]
    assert (config["Hostname"], config["StopSignal"], config["StopTimeout"]) == (
        "app.internal",
        "SIGUSR1",
        90,
    )
    assert (config["OpenStdin"], config["Tty"], info["Platform"]) == (True, True, "linux")
    exposed = {"3000/tcp", "4000/udp", "8000/tcp", "8001/tcp", "53/udp", "8080/tcp"}  # + image's
    assert set(config["ExposedPorts"]) == exposed
    bindings = {k: v[0]["HostPort"] for k, v in host["PortBindings"].items()}
    assert bindings == {"8000/tcp": str(low), "8001/tcp": str(low + 1), "53/udp": str(udp)}
    assert host["ExtraHosts"] == ["db.local:10.0.0.5", "gw:host-gateway"]
    assert (host["Dns"], host["Tmpfs"]) == (["9.9.9.9"], {"/scratch": "size=65536"})
    assert (host["NanoCpus"], host["Memory"], host["PidsLimit"]) == (500_000_000, 256 << 20, 64)
    assert host["ShmSize"] == 128 << 20
    assert sorted(host["Ulimits"], key=lambda u: u["Name"]) == [
        {"Name": "nofile", "Soft": 1024, "Hard": 2048},
        {"Name": "nproc", "Soft": 512, "Hard": 512},
    ]
    assert host["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "1m"}}
    assert config["Healthcheck"] == {"Test": ["NONE"]}
    assert (host["ReadonlyRootfs"], host["CapDrop"]) == (True, ["NET_RAW"])
    assert host["SecurityOpt"] == ["no-new-privileges:true"]
    assert (config["Domainname"], host["DnsSearch"], host["DnsOptions"]) == (
        "home.lan",
        ["home.lan"],
        ["ndots:1"],
    )
    # the other service reaches it by its service name and by its compose container_name
    for name in ("app", "legacy-name"):
        ping = engine.exec_create("app-peer", ["ping", "-c", "1", "-W", "2", name])
        engine.exec_start(ping)
        assert engine.exec_inspect(ping)["ExitCode"] == 0, name

    # a changed key is an update, with the reason the plan shows
    text = (tmp_path / "packages" / "app.yaml").read_text()
    (tmp_path / "packages" / "app.yaml").write_text(text.replace("SIGUSR1", "SIGTERM"))
    plan = cli.invoke(app, ["plan", str(tmp_path), *engine_url, "--output", "json"])
    changes = [c for c in json.loads(plan.stdout)["changes"] if c["action"] != "noop"]
    assert [(c["action"], c["name"], c["reason"]) for c in changes] == [
        ("update", "app-app", "stop_signal changed SIGUSR1 → SIGTERM")
    ]


PRIVILEGED_APP = """compose:
  services:
    hub:
      image: nginx:1.27
      network_mode: host
      privileged: true
      cap_add: [NET_ADMIN]
      devices: ["/dev/ttyUSB0:/dev/zigbee"]
      pid: host
      ipc: host
    tuned:
      image: nginx:1.27
      sysctls: {net.core.somaxconn: "1024"}
"""


def test_powers_over_the_host_are_refused_without_their_grant_named(tmp_path: Path) -> None:
    write_app(tmp_path, PRIVILEGED_APP)
    errors = errors_of(tmp_path)
    assert errors[0] == (
        "packages/app.yaml:5:7: compose.services.hub.network_mode: service 'hub' uses "
        "`network_mode`, a power over the host Nebula gives only when granted; add "
        "`allow: [host_network]` to packages/app.yaml to grant it"
    )
    granted = [e.split("`allow: [")[1].split("]")[0] for e in errors]
    assert granted == [
        "host_network",
        "privileged",
        "cap_add",
        "devices",
        "host_pid",
        "host_ipc",
        "sysctls",
    ]
    # granted all but one: only that one is refused
    write_app(
        tmp_path,
        "allow: [host_network, privileged, cap_add, devices, host_pid, host_ipc]\n"
        + PRIVILEGED_APP,
    )
    (error,) = errors_of(tmp_path)
    assert "tuned" in error and "`allow: [sysctls]`" in error


def test_binding_the_docker_socket_or_system_folders_needs_a_grant(tmp_path: Path) -> None:
    write_app(
        tmp_path,
        """compose:
  services:
    agent:
      image: nginx:1.27
      volumes: [/var/run/docker.sock:/var/run/docker.sock:ro]
    backup:
      image: nginx:1.27
      volumes:
        - {type: bind, source: /etc, target: /host/etc, read_only: true}
        - /srv/media:/media
        - /etc/localtime:/etc/localtime:ro
    clock:
      image: nginx:1.27
      volumes: [/etc/localtime:/etc/localtime:ro, /usr/share/zoneinfo:/usr/share/zoneinfo:ro]
""",
    )
    assert errors_of(tmp_path) == [
        "packages/app.yaml:5:7: compose.services.agent.volumes: service 'agent' uses "
        "`volumes`, a power over the host Nebula gives only when granted; add "
        "`allow: [docker_socket]` to packages/app.yaml to grant it",
        "packages/app.yaml:8:7: compose.services.backup.volumes: service 'backup' uses "
        "`volumes`, a power over the host Nebula gives only when granted; add "
        "`allow: [host_system]` to packages/app.yaml to grant it",
    ]  # media folders and the time zone, read-only, need nothing
    text = (tmp_path / "packages" / "app.yaml").read_text()
    (tmp_path / "packages" / "app.yaml").write_text("allow: [docker_socket, host_system]\n" + text)
    containers = containers_of(tmp_path)
    assert containers["agent"].grants == ("docker_socket",)
    assert containers["backup"].grants == ("host_system",) and containers["clock"].grants == ()


def test_only_no_new_privileges_is_taken_of_the_security_options(tmp_path: Path) -> None:
    write_app(
        tmp_path,
        "compose:\n  services:\n    web:\n      image: nginx:1.27\n"
        "      security_opt: [no-new-privileges=true, seccomp=unconfined]\n",
    )
    assert errors_of(tmp_path) == [
        "packages/app.yaml:5:46: compose.services.web.security_opt[1]: 'seccomp=unconfined': "
        "Nebula takes only `no-new-privileges` here; other security options change the "
        "container's confinement, which Nebula does not grant yet"
    ]


def test_only_the_hosts_namespaces_are_taken(tmp_path: Path) -> None:
    write_app(
        tmp_path,
        "allow: [host_network]\ncompose:\n  services:\n    web:\n      image: nginx:1.27\n"
        "      network_mode: service:db\n",
    )
    assert errors_of(tmp_path) == [
        "packages/app.yaml:6:7: compose.services.web.network_mode: 'service:db' is not "
        "supported yet: Nebula takes only `host` here (with its grant); leave it out to keep "
        "the container's own"
    ]


def test_granted_devices_and_sysctls_are_checked_like_compose(tmp_path: Path) -> None:
    write_app(
        tmp_path,
        """allow: [devices, sysctls]
compose:
  services:
    web:
      image: nginx:1.27
      devices: [/dev/ttyUSB0, {source: /dev/ttyACM0, target: /dev/zigbee, permissions: rw}]
      sysctls: [net.core.somaxconn=1024]
    bad:
      image: nginx:1.27
      devices: [ttyUSB0]
      sysctls: [net.core.somaxconn]
""",
    )
    assert errors_of(tmp_path) == [
        "packages/app.yaml:10:17: compose.services.bad.devices[0]: device 'ttyUSB0': paths are "
        "absolute, e.g. /dev/ttyUSB0",
        "packages/app.yaml:11:17: compose.services.bad.sysctls[0]: 'net.core.somaxconn': "
        "expected NAME=VALUE",
    ]
    text = (tmp_path / "packages" / "app.yaml").read_text()
    (tmp_path / "packages" / "app.yaml").write_text(text.split("    bad:")[0])
    web = containers_of(tmp_path)["web"]
    assert web.devices == ("/dev/ttyUSB0:/dev/ttyUSB0:rwm", "/dev/ttyACM0:/dev/zigbee:rw")
    assert web.sysctls == (("net.core.somaxconn", "1024"),)


def test_a_catalog_package_is_granted_in_the_installation_file(tmp_path: Path) -> None:
    write_app(tmp_path, "package: zigbee\n", name="zb")
    (tmp_path / "catalog" / "zigbee").mkdir(parents=True)
    (tmp_path / "catalog" / "zigbee" / "1.0.0.yaml").write_text(
        "name: zigbee\nversion: 1.0.0\ndescription: a bridge\ncategory: home\n"
        "repository: example/zigbee\n"
        "compose:\n  services:\n    bridge:\n      image: nginx:1.27\n"
        "      devices: [/dev/ttyUSB0]\n"
    )
    assert errors_of(tmp_path) == [
        "packages/zb.yaml:1:1: package: service 'bridge' uses `devices` "
        "(catalog/zigbee/1.0.0.yaml:10), a power over the host Nebula gives only when granted; "
        "add `allow: [devices]` to packages/zb.yaml to grant it"
    ]
    write_app(tmp_path, "package: zigbee\nallow: [devices]\n", name="zb")
    (bridge,) = load_desired(tmp_path).installations[0].containers
    assert bridge.devices == ("/dev/ttyUSB0:/dev/ttyUSB0:rwm",)


# No `privileged:` here: the test engine itself runs without every capability, so runc could
# not give them all; the spec tests above check that it is granted like the others.
GRANTED = """allow: [host_network, cap_add, devices, sysctls, host_pid, host_ipc]
compose:
  services:
    hub:
      image: {image}
      command: [sleep, "3600"]
      init: true
      network_mode: host
      cap_add: [NET_ADMIN]
      devices: ["/dev/null:/dev/zigbee:rw"]
      pid: host
      ipc: host
    tuned:
      image: {image}
      command: [sleep, "3600"]
      init: true
      sysctls: [net.ipv4.ip_unprivileged_port_start=80]
"""


def test_granted_powers_reach_the_container_and_the_plan_shows_them(
    tmp_path: Path, docker_host: str, test_image: str
) -> None:
    write_app(tmp_path, GRANTED.format(image=test_image))
    cli = CliRunner()
    engine_url = ["--docker-host", docker_host]
    plan = cli.invoke(app, ["plan", str(tmp_path), *engine_url, "--output", "json"])
    reasons = {c["name"]: c["reason"] for c in json.loads(plan.stdout)["changes"]}
    assert reasons["app-hub"] == (
        "new installation from packages/app.yaml "
        "(granted: host_network, cap_add, devices, host_pid, host_ipc)"
    )
    assert reasons["app-tuned"].endswith("(granted: sysctls)")
    database = [*engine_url, "--database-url", f"sqlite:///{tmp_path}/n.db"]
    result = cli.invoke(app, ["apply", str(tmp_path), *database])
    assert result.exit_code == 0, result.output
    engine = docker.APIClient(base_url=docker_host, version=servers.DOCKER_API_VERSION)
    hub = engine.inspect_container("app-hub")["HostConfig"]
    assert (hub["NetworkMode"], hub["PidMode"], hub["IpcMode"]) == ("host", "host", "host")
    assert hub["CapAdd"] == ["NET_ADMIN"] and not hub["Privileged"]
    assert hub["Devices"] == [
        {"PathOnHost": "/dev/null", "PathInContainer": "/dev/zigbee", "CgroupPermissions": "rw"}
    ]
    tuned = engine.inspect_container("app-tuned")["HostConfig"]
    assert tuned["Sysctls"] == {"net.ipv4.ip_unprivileged_port_start": "80"}
    # inside: the node's processes (pid: host: process 1 is the node's, not docker-init) and
    # the device at its path
    init = engine.exec_create("app-hub", ["cat", "/proc/1/comm"])
    assert engine.exec_start(init).decode().strip() not in ("docker-init", "sleep")
    device = engine.exec_create("app-hub", ["test", "-c", "/dev/zigbee"])
    engine.exec_start(device)
    assert engine.exec_inspect(device)["ExitCode"] == 0
    sysctl = engine.exec_create(
        "app-tuned", ["cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start"]
    )
    assert engine.exec_start(sysctl).decode().strip() == "80"


@pytest.mark.docker
def test_an_image_for_another_platform_is_fetched_for_that_platform(
    docker_host: str, test_image: str
) -> None:
    """`platform:` decides which image runs: the local image serves its own platform; for
    another one it is pulled for that platform (here no registry answers, so it fails saying
    so), never replaced by the local image of another platform."""
    from nebula.errors import ProviderError
    from nebula.providers.docker import DockerProvider

    provider = DockerProvider(docker_host)
    try:
        arch = provider.api.inspect_image(test_image)["Architecture"]
        provider.ensure_image(test_image, f"linux/{arch}")  # present: no pull
        other = "s390x" if arch != "s390x" else "amd64"
        with pytest.raises(ProviderError, match="not present locally and pull failed"):
            provider.ensure_image(test_image, f"linux/{other}")
    finally:
        provider.close()
