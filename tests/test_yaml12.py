"""Every file is read with YAML 1.2's rules, as compose reads it: none of YAML 1.1's traps."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from nebula.catalog import Catalog, builtin_catalog_dir
from nebula.catalog.importers.common import UnconvertibleError, read_compose
from nebula.engine.catalog_edits import NewInstallation
from nebula.engine.load import load_desired
from nebula.errors import ConfigError
from nebula.kinds.packages.diff import diff
from nebula.kinds.packages.types import ContainerSpec, Observed, PortBinding
from nebula.kinds.packages.types import Resource as Kind
from nebula.spec.yaml_dump import dump_yaml
from nebula.spec.yamlfile import parse_yaml


def value_of(text: str) -> Any:
    return parse_yaml(f"value: {text}\n", "f.yaml").data["value"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("53:53", "53:53"),  # YAML 1.1: base 60, 3233
        ("10025:25", "10025:25"),  # YAML 1.1: 601525
        ("1:30:00", "1:30:00"),
        ("190:20:30.15", "190:20:30.15"),  # YAML 1.1: a base-60 float
        ("2024-01-31", "2024-01-31"),  # YAML 1.1: a date
        ("2001-12-14t21:59:43.10-05:00", "2001-12-14t21:59:43.10-05:00"),
        ("yes", "yes"),
        ("Yes", "Yes"),
        ("no", "no"),
        ("NO", "NO"),
        ("on", "on"),
        ("Off", "Off"),
        ("y", "y"),
        ("n", "n"),
        ("=", "="),
        ("0b", "0b"),
        ("1.2.3", "1.2.3"),
        ("1e999", "1e999"),  # beyond a double: no silent infinity
        ("'53:53'", "53:53"),
        ('"true"', "true"),
        ('"17"', "17"),
        ("!!str 17", "17"),
    ],
)
def test_what_yaml_11_would_change_stays_the_string_written(text: str, expected: str) -> None:
    assert value_of(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", True),
        ("True", True),
        ("TRUE", True),
        ("false", False),
        ("False", False),
        ("FALSE", False),
        ("~", None),
        ("null", None),
        ("Null", None),
        ("NULL", None),
        ("", None),
        ("17", 17),
        ("-17", -17),
        ("+17", 17),
        ("0o17", 15),
        ("0x1F", 31),
        ("-0x1f", -31),
        ("0b101", 5),
        ("0777", 511),  # as compose reads it (go-yaml keeps 1.1's octal for compatibility)
        ("1_000", 1000),
        ("100000000000000000000000000000", 10**29),  # exact, never a rounded float
        ("1.5", 1.5),
        ("-1.5e3", -1500.0),
        ("1e3", 1000.0),
        (".5", 0.5),
        (".inf", math.inf),
        ("-.Inf", -math.inf),
        ("+.INF", math.inf),
        ("!!int 17", 17),
        ("!!float 1", 1.0),
        ("!!bool true", True),
        ("!!null ''", None),
    ],
)
def test_yaml_12_core_values(text: str, expected: object) -> None:
    value = value_of(text)
    assert value == expected
    assert type(value) is type(expected)


def test_nan_is_a_float() -> None:
    assert math.isnan(value_of(".nan"))


def test_keys_are_read_by_the_same_rules() -> None:
    data = parse_yaml("on: push\nyes: 1\n53: x\n", "f.yaml").data
    assert data == {"on": "push", "yes": 1, "53": "x"}


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("!!bool yes", "f.yaml:1:8: value: cannot read 'yes' as !!bool"),
        ("!!int 53:53", "f.yaml:1:8: value: cannot read '53:53' as !!int"),
        ("!!timestamp 2024-01-31", "f.yaml:1:8: value: unsupported tag '!!timestamp'"),
    ],
)
def test_a_tag_the_text_does_not_fit_is_an_error_at_its_line(text: str, error: str) -> None:
    with pytest.raises(ConfigError) as caught:
        value_of(text)
    assert str(caught.value.issues[0]).startswith(error)


def test_inline_compose_ports_and_environment_plan_as_written(tmp_path: Path) -> None:
    (tmp_path / "packages").mkdir()
    (tmp_path / "nebula.yaml").write_text("")
    (tmp_path / "packages" / "dns.yaml").write_text(
        "compose:\n"
        "  services:\n"
        "    server:\n"
        "      image: busybox:1.36\n"
        "      ports: [53:53, 2222:22, 10025:25/udp]\n"
        "      environment:\n"
        "        FOO: yes\n"
        "        BAR: on\n"
        "        MODE: 0o17\n"
    )
    desired = load_desired(tmp_path)
    plan = diff(desired.installations, Observed())
    (created,) = [c.desired for c in plan.changes if c.kind is Kind.CONTAINER]
    assert isinstance(created, ContainerSpec)
    assert created.ports == (
        PortBinding(container_port=53, protocol="tcp", host_ip="0.0.0.0", host_port=53),
        PortBinding(container_port=22, protocol="tcp", host_ip="0.0.0.0", host_port=2222),
        PortBinding(container_port=25, protocol="udp", host_ip="0.0.0.0", host_port=10025),
    )
    assert dict(created.environment) == {"FOO": "yes", "BAR": "on", "MODE": "15"}


def test_store_files_are_read_by_the_same_rules(tmp_path: Path) -> None:
    store_file = tmp_path / "docker-compose.yml"
    store_file.write_text(
        "services:\n  mail:\n    image: mail:1\n    ports: [10025:25, 53:53/udp]\n"
        "    environment: {RELAY: yes}\n"
    )
    service = read_compose(store_file)["services"]["mail"]
    assert service["ports"] == ["10025:25", "53:53/udp"]
    assert service["environment"] == {"RELAY": "yes"}
    store_file.write_text("services:\n  mail: {image: mail:1}\n  mail: {image: mail:2}\n")
    with pytest.raises(
        UnconvertibleError, match=r"docker-compose\.yml:3:3: services\.mail: duplicate key"
    ):
        read_compose(store_file)


WRITTEN = ["0o17", "1e3", "1e+3", "08", "0x1F", "53:53", "yes", "on", "~", "", "1.0", "plain"]


def test_what_nebula_writes_reads_back_as_written() -> None:
    data = {"values": dict.fromkeys(WRITTEN, "x"), "list": WRITTEN, "n": 8, "f": 1.5, "b": True}
    assert parse_yaml(dump_yaml(data), "f.yaml").data == data


def test_an_installed_value_like_a_number_stays_the_text_given() -> None:
    entry = Catalog([builtin_catalog_dir()]).get("redis")
    assert entry is not None
    added = NewInstallation("cache", entry.package, values={"PORT": "08", "MODE": "0o17"})
    document = parse_yaml(added.to_yaml(), "packages/cache.yaml").data
    assert document["values"] == {"MODE": "0o17", "PORT": "08"}


@pytest.mark.parametrize(
    ("written", "text"),
    [("08", "8"), ("1e3", "1000"), ("1.0", "1"), ("1e6", "1e+06"), ("1.5", "1.5"),
     ("0.00001", "1e-05"), (".inf", "+Inf"), ("-8", "-8"), ("0777", "511")],
)  # fmt: skip
def test_a_number_where_text_is_wanted_reads_as_compose_writes_it(
    tmp_path: Path, written: str, text: str
) -> None:
    """Compose turns an unquoted number into text with Go's `%v`; so does Nebula."""
    from nebula.spec.base import StrictModel, Text

    class Holder(StrictModel):
        value: Text

    doc = parse_yaml(f"value: {written}\n", "x.yaml")
    assert Holder.model_validate(doc.data).value == text


def test_a_config_mode_written_as_text_is_octal() -> None:
    from nebula.spec.compose import ServiceConfig

    assert ServiceConfig.model_validate({"source": "a", "mode": "0440"}).mode == 0o440
    assert ServiceConfig.model_validate({"source": "a", "mode": "644"}).mode == 0o644
    assert ServiceConfig.model_validate({"source": "a", "mode": 0o440}).mode == 0o440
