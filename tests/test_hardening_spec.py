"""Hostile and wrong config repos: refused quickly, at file:line, never a traceback or a hang."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nebula.catalog import Catalog, builtin_catalog_dir
from nebula.cli.app import app
from nebula.engine.load import load_desired
from nebula.errors import ConfigError
from nebula.kinds.packages.diff import diff
from nebula.kinds.packages.resolve import resolve
from nebula.spec.config import NebulaConfig
from nebula.spec.installation import Installation
from nebula.spec.repo import InstallationSource, RepoSpec
from nebula.spec.validate import validate_document
from nebula.spec.yamlfile import parse_yaml
from test_plan import observed_from

runner = CliRunner()


def validate(root: Path, files: dict[str, str], config: str = "") -> list[str]:
    """`nebula validate --output json` on a repo of `files`: its errors, as file:line:col texts."""
    (root / "packages").mkdir(parents=True, exist_ok=True)
    (root / "nebula.yaml").write_text(config)
    for name, text in files.items():
        (root / name).write_text(text)
    result = runner.invoke(app, ["validate", str(root), "--output", "json"])
    data = json.loads(result.stdout)
    if data["ok"]:
        return []
    assert result.exit_code == 2, result.output
    return [
        f"{e['file']}:{e['line']}:{e['column']}: {e['field']}: {e['message']}"
        for e in data["errors"]
    ]


def _laughs(levels: int) -> str:
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def _merge_bomb(levels: int) -> str:
    lines = ["m0: &m0 {k0: 1}"]
    for i in range(1, levels):
        lines.append(f"m{i}: &m{i} {{<<: [*m{i - 1}, *m{i - 1}, *m{i - 1}], k{i}: 1}}")
    return "\n".join(lines) + "\n"


def _nested_anchors(levels: int, items: int) -> str:
    """`levels` anchored mappings, one inside the other, around a flow list of `items`."""
    lines = [f"{'  ' * i}a{i}: &a{i}\n" for i in range(levels)]
    return "".join(lines) + "  " * levels + "x: [" + ",".join(["1"] * items) + "]\n"


BOMBS = {
    # name: (file text, the error expected at packages/x.yaml:LINE:COLUMN)
    "billion laughs": (_laughs(30), "6:20: a5: more than 250,000 values"),
    "merge-key bomb": (_merge_bomb(40), "11:17: m10: more than 250,000 values"),
    "nesting 50,000 deep (flow)": ("a: " + "[" * 50_000 + "]" * 50_000, "1:103:"),
    "nesting 1,200 deep (block)": (
        "a:\n" + "".join(" " * i + "b:\n" for i in range(1, 1200)),
        "101:101: a.b.b.b.b.b…: nested more than 100 levels deep",
    ),
    "python object tag": (
        "compose: !!python/object/apply:os.system [touch /tmp/pwned]\n",
        "1:10: compose: unsupported tag '!!python/object/apply:os.system'",
    ),
    "custom tag": ("compose: !foo bar\n", "1:10: compose: unsupported tag '!foo'"),
    "nested anchors around a long list": (_nested_anchors(60, 60_000), "1:1: a0: "),
    "alias to itself": ("a: &a [*a]\n", "1:8: a[0]: invalid YAML: no anchor &a before this alias"),
}


@pytest.mark.parametrize("name", BOMBS)
def test_yaml_bombs_are_refused_at_their_line_without_hanging(tmp_path: Path, name: str) -> None:
    text, expected = BOMBS[name]
    started = time.monotonic()
    errors = validate(tmp_path, {"packages/x.yaml": text})
    assert time.monotonic() - started < 5.0  # the issue's bound; each takes milliseconds
    assert len(errors) == 1
    assert errors[0].startswith(f"packages/x.yaml:{expected}"), errors


def test_an_undefined_alias_to_merge_is_one_error(tmp_path: Path) -> None:
    for merged, column in (("*nope", 11), ("[*nope]", 12)):
        text = _app(f"      <<: {merged}\n")
        assert validate(tmp_path, {"packages/web.yaml": text}) == [
            f"packages/web.yaml:5:{column}: compose.services.web: invalid YAML: no anchor &nope "
            "before this alias"
        ]


def test_nesting_limit_is_named_in_the_error(tmp_path: Path) -> None:
    errors = validate(tmp_path, {"packages/x.yaml": "a: " + "[" * 500 + "]" * 500})
    assert errors == ["packages/x.yaml:1:103: a[0][0][0][0][0]…: nested more than 100 levels deep"]


def test_a_custom_tag_in_nebula_yaml_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    errors = validate(tmp_path, {}, config="defaults: !!python/name:os.system\n")
    assert errors == [
        "nebula.yaml:1:11: defaults: unsupported tag '!!python/name:os.system': "
        "only plain YAML values are read"
    ]


def test_anchors_and_merge_keys_still_work_and_errors_point_into_the_anchor(
    tmp_path: Path,
) -> None:
    app_yaml = (
        "compose:\n"
        "  services:\n"
        "    web: &base\n"
        "      image: busybox:1.36\n"
        "      restart: sometimes\n"
        "    worker:\n"
        "      <<: *base\n"
        "      command: [sleep, '1']\n"
    )
    errors = validate(tmp_path, {"packages/app.yaml": app_yaml})
    assert [e.split(": ")[:2] for e in errors] == [
        ["packages/app.yaml:5:7", "compose.services.web.restart"],
        ["packages/app.yaml:5:7", "compose.services.worker.restart"],
    ]
    fixed = app_yaml.replace("sometimes", "always")
    assert validate(tmp_path, {"packages/app.yaml": fixed}) == []
    spec = validate_document(parse_yaml(fixed, "app.yaml"), Installation)
    assert spec.compose is not None
    assert spec.compose.services["worker"].restart == "always"


def test_a_text_over_the_size_limit_is_refused_and_nesting_up_to_the_limit_reads() -> None:
    with pytest.raises(ConfigError, match="the file is over 1,024 KiB"):
        parse_yaml("a: " + "x" * (1024 * 1024 + 1), "x.yaml")
    nested: list[object] = []
    for _ in range(98):
        nested = [nested]
    assert parse_yaml("a: " + "[" * 99 + "]" * 99, "x.yaml").data == {"a": nested}


def test_ten_thousand_unknown_keys_are_each_reported_at_their_line(tmp_path: Path) -> None:
    """How the time grows (linearly; quadratically before) is bench/hostile_repos.py's."""
    text = "compose:\n  services:\n    web:\n      image: busybox:1.36\n" + "".join(
        f"      key{i}: 1\n" for i in range(10_000)
    )
    doc = parse_yaml(text, "packages/x.yaml")
    with pytest.raises(Exception) as caught:
        validate_document(doc, Installation)
    issues = caught.value.issues  # type: ignore[attr-defined]
    assert len(issues) == 10_000
    assert str(issues[-1]).startswith("packages/x.yaml:10004:7: compose.services.web.key9999:")


def test_ten_thousand_running_installations_plan_no_change() -> None:
    """How the time grows (linearly; quadratically before) is bench/hostile_repos.py's."""
    doc = parse_yaml("compose:\n  services:\n    web:\n      image: busybox:1.36\n", "x.yaml")
    spec = validate_document(doc, Installation)
    sources = tuple(InstallationSource(f"app{i}", spec, doc) for i in range(10_000))
    repo = RepoSpec(Path("/nonexistent"), NebulaConfig(), sources)
    desired = resolve(repo, Catalog([builtin_catalog_dir()]))
    assert [d.name for d in desired[:2]] == ["app0", "app1"]
    assert not diff(desired, observed_from(*desired)).has_changes


def _app(service: str, *, name: str = "web", extra: str = "") -> str:
    """An inline app of one busybox service, with `service` lines under it (6 spaces deep)."""
    return f"compose:\n  services:\n    {name}:\n      image: busybox:1.36\n{service}{extra}"


def test_an_invalid_bind_address_is_an_error_never_every_interface(tmp_path: Path) -> None:
    errors = validate(tmp_path, {}, config="defaults:\n  bind_address: 999.1.1.1\n")
    assert errors == [
        "nebula.yaml:2:3: defaults.bind_address: '999.1.1.1' is not an IP address; "
        "use e.g. 0.0.0.0, 127.0.0.1 or ::1"
    ]
    ports = "      ports:\n        - 999.1.1.1:8080:80\n        - {target: 81, host_ip: 1.2.3}\n"
    errors = validate(tmp_path, {"packages/web.yaml": _app(ports)}, config="")
    assert errors == [
        "packages/web.yaml:6:11: compose.services.web.ports[0]: '999.1.1.1' is not an IP address;"
        " use e.g. 0.0.0.0, 127.0.0.1 or ::1",
        "packages/web.yaml:7:11: compose.services.web.ports[1]: '1.2.3' is not an IP address; "
        "use e.g. 0.0.0.0, 127.0.0.1 or ::1",
    ]
    errors = validate(tmp_path, {}, config="defaults:\n  bind_address: fe80::1%eth0\n")
    assert errors == [
        "nebula.yaml:2:3: defaults.bind_address: 'fe80::1%eth0': Docker takes no %zone; "
        "write the address alone"
    ]
    ports = "      ports: ['127.0.0.1:8080:80', '[::1]:8081:81', '8082:82']\n"
    (tmp_path / "packages" / "web.yaml").write_text(_app(ports))
    (tmp_path / "nebula.yaml").write_text("defaults: {bind_address: '192.168.1.5'}\n")
    (web,) = load_desired(tmp_path).installations
    assert [p.host_ip for p in web.containers[0].ports] == ["127.0.0.1", "::1", "192.168.1.5"]


def test_ipv6_ports_are_read_as_docker_reads_them(tmp_path: Path) -> None:
    """Docker's port grammar: all parts but the last two are the IP, brackets optional."""
    ports = "      ports: ['::1:8080:80', '[::1]:8081:81', '[2001:db8::1]::82/udp', '::83']\n"
    (tmp_path / "packages").mkdir()
    (tmp_path / "packages" / "web.yaml").write_text(_app(ports))
    (tmp_path / "nebula.yaml").write_text("")
    (web,) = load_desired(tmp_path).installations
    assert [
        (p.host_ip, p.host_port, p.container_port, p.protocol) for p in web.containers[0].ports
    ] == [
        ("::1", 8080, 80, "tcp"),
        ("::1", 8081, 81, "tcp"),
        ("2001:db8::1", None, 82, "udp"),
        ("0.0.0.0", None, 83, "tcp"),  # `:` alone: an empty IP and host port, as in Docker
    ]


@pytest.mark.parametrize(
    ("lines", "error"),
    [
        (
            "      healthcheck: {test: [CMD, 'true'], timeout: .inf}\n",
            "5:42: compose.services.web.healthcheck.timeout: a duration is from 0 to 168h",
        ),
        (
            "      healthcheck: {test: [CMD, 'true'], interval: .nan}\n",
            "5:42: compose.services.web.healthcheck.interval: a duration is from 0 to 168h",
        ),
        (
            "      healthcheck: {test: [CMD, 'true'], start_period: 999999999h}\n",
            "5:42: compose.services.web.healthcheck.start_period: a duration is from 0 to 168h",
        ),
        (
            "      healthcheck: {test: [CMD, 'true'], retries: 100000000000000000000000000000}\n",
            "5:42: compose.services.web.healthcheck.retries: expected less than or equal to 10000",
        ),
        (
            "      restart: on-failure:٣\n",
            "5:7: compose.services.web.restart: 'on-failure:٣' is not a restart policy",
        ),
        (
            "      ports: ['８０:80']\n",
            "5:15: compose.services.web.ports[0]: '８０' is not a port number (1-65535)",
        ),
        (
            "      environment: {GREETING: 'hello ${NAME'}\n",
            "5:21: compose.services.web.environment.GREETING: unclosed reference '${NAME': "
            "close it with }, or write $$ for $",
        ),
        (
            "      command: [echo, '${NAME:-x']\n",
            "5:23: compose.services.web.command[1]: unclosed reference '${NAME:-x': ",
        ),
    ],
    ids=[
        "infinite timeout",
        "nan interval",
        "absurd duration",
        "absurd retries",
        "arabic-indic digit",
        "fullwidth digits",
        "unclosed ${",
        "unclosed ${ with default",
    ],
)
def test_values_docker_would_refuse_or_misread_are_errors_at_their_line(
    tmp_path: Path, lines: str, error: str
) -> None:
    errors = validate(tmp_path, {"packages/web.yaml": _app(lines)})
    assert len(errors) == 1
    assert errors[0].startswith(f"packages/web.yaml:{error}"), errors


LONG = "s3cr3t-" + "TAILOFTHESECRET" * 4  # 67 characters


@pytest.mark.parametrize(
    "lines",
    [
        f"      healthcheck: {{test: [CMD, 'true'], interval: '{LONG}'}}\n",
        f"      ports: ['{LONG}:80']\n",
        f"      ports: ['127.0.0.1:80:{LONG}']\n",
        f"      restart: '{LONG}'\n",
        f"      volumes: ['{LONG}']\n",
        f"      environment: {{A: '${{{LONG}'}}\n",
        f"      command: ['${{secret:{LONG}/x}}']\n",
        f"      '{LONG}{LONG}': 1\n",
        "",  # the image
    ],
    ids=["duration", "ip", "port", "restart", "volume", "unclosed", "secret", "key", "image"],
)
def test_a_long_value_is_quoted_by_an_excerpt_only(tmp_path: Path, lines: str) -> None:
    """Whatever the value, an error shows at most its first 12 characters when it is long."""
    text = _app(lines) if lines else _app("").replace("busybox:1.36", LONG)
    (error,) = validate(tmp_path, {"packages/web.yaml": text})
    assert "TAILOFTHESECRET" not in error
    assert "… (" in error


def test_health_check_durations_are_finite_and_bounded(tmp_path: Path) -> None:
    checks = "health_checks:\n  - {name: up, tcp: '127.0.0.1:80', timeout: .inf, interval: -1}\n"
    errors = validate(tmp_path, {"packages/web.yaml": _app("", extra=checks)})
    assert errors == [
        "packages/web.yaml:6:37: health_checks[0].timeout: a duration is from 0 to 168h (7 days)",
        "packages/web.yaml:6:52: health_checks[0].interval: a duration is from 0 to 168h (7 days)",
    ]
    ok = "health_checks:\n  - {name: up, tcp: '127.0.0.1:80', timeout: 1m30s, interval: 168h}\n"
    assert validate(tmp_path, {"packages/web.yaml": _app("", extra=ok)}) == []


def test_service_and_volume_names_follow_composes_grammar(tmp_path: Path) -> None:
    errors = validate(tmp_path, {"packages/web.yaml": _app("", name="🌌app")})
    assert errors == [
        "packages/web.yaml:3:5: compose.services.'🌌app': service name '🌌app' is not valid: "
        "use letters, digits, '_', '.' and '-'"
    ]
    errors = validate(tmp_path, {"packages/web.yaml": _app("      volumes: ['d@ta:/data']\n")})
    assert errors == [
        "packages/web.yaml:5:17: compose.services.web.volumes[0]: volume name 'd@ta' is not "
        "valid: use letters, digits, '_', '.' and '-'"
    ]
    for name, volume in (("Web_1.a-b", "data"), ("_init", "_data"), ("-x", "-data")):
        volumes = f"      volumes: ['{volume}:/data']\n"
        assert validate(tmp_path, {"packages/web.yaml": _app(volumes, name=name)}) == [], name


def test_a_variable_declared_twice_is_one_error_at_its_line(tmp_path: Path) -> None:
    variables = "variables:\n  - {name: PORT, default: '80'}\n  - {name: PORT, default: '81'}\n"
    errors = validate(tmp_path, {"packages/web.yaml": _app("", extra=variables)})
    assert errors == [
        "packages/web.yaml:7:6: variables[1].name: variable PORT is declared twice (first on line 6)"
    ]
    # In a catalog package: once for the file, however many installations use it, and
    # `nebula catalog validate` says so too.
    package = "name: demo\nversion: '1'\n" + _app("", extra=variables)
    files = {"catalog/demo/1.yaml": package, "packages/a.yaml": "package: demo\n"}
    root = tmp_path / "lab"
    (root / "catalog" / "demo").mkdir(parents=True)
    errors = validate(root, {**files, "packages/b.yaml": "package: demo\n"})
    expected = "catalog/demo/1.yaml:9:6: variables[1].name: variable PORT is declared twice"
    assert errors == [f"{expected} (first on line 8)"]
    result = runner.invoke(app, ["catalog", "validate", str(root / "catalog")])
    assert result.exit_code == 2 and f"error: {expected}" in result.output, result.output
