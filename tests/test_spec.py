"""Loading a config repo: models, interpolation, and errors that point at file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from nebula.catalog import Catalog, builtin_catalog_dir
from nebula.errors import ConfigError
from nebula.kinds.packages.resolve import resolve
from nebula.kinds.packages.types import DesiredInstallation
from nebula.spec.interpolate import InterpolationError, interpolate
from nebula.spec.package import Package
from nebula.spec.repo import load_repo
from nebula.spec.validate import validate_document
from nebula.spec.yamlfile import parse_yaml

SEED = Path(__file__).resolve().parents[2] / "shared" / "SEED.md"


def write_repo(root: Path, packages: dict[str, str], config: str = "") -> Path:
    (root / "packages").mkdir(parents=True, exist_ok=True)
    (root / "nebula.yaml").write_text(config)
    for name, text in packages.items():
        (root / "packages" / name).write_text(text)
    return root


def errors_of(root: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        repo = load_repo(root)
        resolve(repo, Catalog([builtin_catalog_dir()]))
    return [str(issue) for issue in caught.value.issues]


def test_seed_wordpress_package_is_in_the_catalog_unchanged_and_validates() -> None:
    catalog_text = (builtin_catalog_dir() / "wordpress" / "6.4.2.yaml").read_text()
    if SEED.exists():  # beside the project in development; the copy in catalog/ is the contract
        seed_block = SEED.read_text().split("```yaml\n", 1)[1].split("```", 1)[0]
        assert catalog_text == seed_block
    package = validate_document(parse_yaml(catalog_text, "wordpress.yaml"), Package)
    assert package.name == "wordpress"
    assert package.version == "6.4.2"
    assert package.compose.services["wordpress"].image == "wordpress:6.4-apache"
    assert [v.name for v in package.variables] == ["PORT", "DB_PASSWORD"]
    assert package.variables[1].secret and package.variables[1].required
    assert package.health_checks[0].timeout == 10.0
    assert package.hooks.post_install[0].startswith("echo")


def test_typo_in_a_field_names_file_line_and_suggests_the_field(tmp_path: Path) -> None:
    write_repo(
        tmp_path,
        {"web.yaml": "compose:\n  services:\n    web:\n      imagee: nginx:1.27\n"},
    )
    # the suggestion is the one fix: no second error about the image it would give
    assert errors_of(tmp_path) == [
        "packages/web.yaml:4:7: compose.services.web.imagee: unknown field; did you mean 'image'?"
    ]


def test_every_error_of_every_file_is_reported_at_once(tmp_path: Path) -> None:
    write_repo(
        tmp_path,
        {
            "a.yaml": "compose:\n  services:\n    web:\n      image: x\n      restart: sometimes\n",
            "b.yaml": "packag: wordpress\n",
            "c.yaml": "compose: [\n",
        },
        config="defaults:\n  parallelism: 0\n",
    )
    errors = errors_of(tmp_path)
    assert any(e.startswith("nebula.yaml:2:3: defaults.parallelism:") for e in errors)
    assert any(
        e.startswith(
            "packages/a.yaml:5:7: compose.services.web.restart: 'sometimes' is not a restart policy"
        )
        for e in errors
    )
    assert any(
        e.startswith("packages/b.yaml:1:1: packag: unknown field; did you mean 'package'?")
        for e in errors
    )
    assert any(e.startswith("packages/c.yaml:") and "invalid YAML" in e for e in errors)


def test_invalid_choice_lists_the_valid_ones(tmp_path: Path) -> None:
    write_repo(
        tmp_path,
        {
            "a.yaml": "compose:\n  services:\n    web:\n      image: x\n    db:\n      image: y\n"
            "      depends_on:\n        web: {condition: healthy}\n"
        },
    )
    (error,) = errors_of(tmp_path)
    assert error.startswith("packages/a.yaml:8:15: compose.services.db.depends_on.web.condition:")
    assert "'service_started', 'service_healthy' or 'service_completed_successfully'" in error


def test_duplicate_keys_are_errors(tmp_path: Path) -> None:
    write_repo(tmp_path, {"a.yaml": "package: redis\npackage: postgres\n"})
    (error,) = errors_of(tmp_path)
    assert error == "packages/a.yaml:2:1: package: duplicate key (first defined on line 1)"


def test_missing_required_variable_is_an_error_naming_it(tmp_path: Path) -> None:
    write_repo(
        tmp_path, {"blog.yaml": "package: wordpress\nvalues:\n  DB_HOST: db\n  DB_USER: wp\n"}
    )
    (error,) = errors_of(tmp_path)
    assert error.startswith("packages/blog.yaml:2:1: values: required variable DB_PASSWORD")


def test_unknown_value_and_unknown_package_suggest_the_right_name(tmp_path: Path) -> None:
    write_repo(
        tmp_path,
        {
            "blog.yaml": "package: wordpress\nvalues: {DB_PASSWORD: '${secret:db}', DB_HOST: db, DB_USER: u, PROT: '1'}\n",
            "kuma.yaml": "package: uptime-kumaa\n",
        },
    )
    errors = errors_of(tmp_path)
    assert any(
        "values.PROT: no variable 'PROT' in this app; did you mean 'PORT'?" in e for e in errors
    )
    assert any(
        "no package 'uptime-kumaa' in the catalog; did you mean 'uptime-kuma'?" in e for e in errors
    )


def test_a_variable_used_but_given_nowhere_points_at_where_it_is_used(tmp_path: Path) -> None:
    write_repo(
        tmp_path,
        {"blog.yaml": "package: wordpress\nvalues: {DB_PASSWORD: '${secret:db}', DB_USER: u}\n"},
    )
    (error,) = errors_of(tmp_path)
    assert "variable DB_HOST has no value (used at catalog/wordpress/6.4.2.yaml:16)" in error


def test_a_bad_value_for_a_catalog_package_is_reported_at_the_installation(
    tmp_path: Path,
) -> None:
    """Fixed where it was given: the installation's file and the variable, and where the
    package uses it."""
    write_repo(tmp_path, {"dns.yaml": "package: adguard-home\nvalues:\n  PORT: abc\n"})
    (error,) = errors_of(tmp_path)
    assert error.startswith(
        "packages/dns.yaml:3:3: values.PORT: 'abc' is not a port number (1-65535) (the package "
        "uses it at catalog/adguard-home/"
    )
    assert ": compose.services.adguardhome.ports[2])" in error


def test_dependency_cycles_and_unknown_services_are_errors(tmp_path: Path) -> None:
    write_repo(
        tmp_path,
        {
            "a.yaml": "compose:\n  services:\n    a: {image: x, depends_on: [b]}\n"
            "    b: {image: x, depends_on: [a, c]}\n"
        },
    )
    errors = errors_of(tmp_path)
    assert any("dependency cycle: a → b → a" in e for e in errors)
    assert any("no service 'c'" in e for e in errors)


def test_port_and_volume_syntax_is_checked_after_interpolation(tmp_path: Path) -> None:
    write_repo(
        tmp_path,
        {
            "a.yaml": "compose:\n  services:\n    web:\n      image: x\n"
            "      ports: ['${P:-99999}:80', '8000-8010:80']\n      volumes: [/data, 'rel/x:/y']\n"
        },
    )
    errors = errors_of(tmp_path)
    assert any("ports[0]: '99999' is not a port number" in e for e in errors)
    assert any("ports[1]" in e and "host port range for one container port" in e for e in errors)
    assert any("volumes[0]" in e and "anonymous volume" in e for e in errors)


def test_a_folder_without_nebula_yaml_says_how_to_start(tmp_path: Path) -> None:
    (error,) = errors_of(tmp_path)
    assert "is not a Nebula config repo" in error and "nebula init" in error


@pytest.mark.parametrize(
    ("text", "values", "expected"),
    [
        ("${A}", {"A": "1"}, "1"),
        ("$A-$A", {"A": "1"}, "1-1"),
        ("${B:-fallback}", {}, "fallback"),
        ("${E:-fallback}", {"E": ""}, "fallback"),
        ("${E-fallback}", {"E": ""}, ""),
        ("${A:+set}", {"A": "1"}, "set"),
        ("$$HOME", {}, "$HOME"),
        ("no references", {}, "no references"),
    ],
)
def test_interpolation_follows_compose(text: str, values: dict[str, str], expected: str) -> None:
    assert interpolate(text, values) == expected


def test_interpolation_errors() -> None:
    with pytest.raises(InterpolationError, match="variable B has no value"):
        interpolate("${B}", {})
    with pytest.raises(InterpolationError, match="need B"):
        interpolate("${B:?need B}", {})
    with pytest.raises(InterpolationError, match="invalid reference"):
        interpolate("${1B}", {})


def test_installation_resolves_into_labelled_container_specs(tmp_path: Path) -> None:
    write_repo(
        tmp_path,
        {
            "blog.yaml": "package: wordpress\nvalues: {DB_PASSWORD: '${secret:db}', DB_HOST: mysql, DB_USER: wp, PORT: '8081'}\n"
        },
        config="defaults: {bind_address: 127.0.0.1}\n",
    )
    repo = load_repo(tmp_path)
    (blog,) = resolve(repo, Catalog([builtin_catalog_dir()]), {"db": "0123456789ab"})
    web, db = blog.containers
    assert (web.name, web.image) == ("blog-wordpress", "wordpress:6.4-apache")
    assert str(web.ports[0]) == "127.0.0.1:8081->80/tcp"
    assert [str(m) for m in web.mounts] == ["blog_wordpress_data:/var/www/html"]
    assert {v.name for v in blog.volumes} == {"blog_wordpress_data", "blog_db_data"}
    assert [n.name for n in blog.networks] == ["blog_default"]
    assert blog.health_checks[0].url == "http://localhost:8081/"
    # a secret is its stand-in (its fingerprint) until apply reveals it
    assert ("WORDPRESS_DB_PASSWORD", "••••0123456789ab") in web.environment
    assert db.summary()["environment"]["MYSQL_ROOT_PASSWORD"] == "••••0123456789ab"
    assert blog.secrets == (("db", "0123456789ab"),)


def test_durations_accept_compose_units_and_bare_seconds() -> None:
    from nebula.spec.base import parse_duration

    assert parse_duration("1m30s") == 90.0
    assert parse_duration("500ms") == 0.5
    assert parse_duration("3600") == 3600.0  # flags and environment variables give text
    assert parse_duration(2) == 2.0
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration("soon")


def test_long_form_ports_and_volumes_are_interpolated_like_short_ones(tmp_path: Path) -> None:
    app = """\
compose:
  services:
    web:
      image: nginx:1.27
      ports: [{target: 80, published: "${PORT}", host_ip: "${BIND}"}]
      volumes: [{type: bind, source: "${MEDIA}", target: /media, read_only: true}]
variables:
  - {name: PORT, default: "8093"}
  - {name: BIND, default: 127.0.0.1}
  - {name: MEDIA, default: /srv/media}
"""
    write_repo(tmp_path, {"web.yaml": app})
    (web_app,) = resolve(load_repo(tmp_path), Catalog([builtin_catalog_dir()]))
    (web,) = web_app.containers
    assert str(web.ports[0]) == "127.0.0.1:8093->80/tcp"
    assert [str(m) for m in web.mounts] == ["/srv/media:/media:ro"]


def test_a_reload_parses_again_only_the_files_that_changed(tmp_path: Path) -> None:
    app = "package: wordpress\nvalues: {{site_title: {title}}}\n"
    root = write_repo(tmp_path, {"a.yaml": app.format(title="A"), "b.yaml": app.format(title="B")})
    first = {s.name: s for s in load_repo(root).installations}
    (root / "packages" / "b.yaml").write_text(app.format(title="Bee"))
    second = {s.name: s for s in load_repo(root).installations}

    assert second["a"].spec is first["a"].spec and second["a"].doc is first["a"].doc
    assert second["b"].spec is not first["b"].spec
    assert second["b"].spec.values == {"site_title": "Bee"}
    # A broken file is reported on every load, not only the first.
    (root / "packages" / "b.yaml").write_text("package: wordpress\nvalue: {}\n")
    for _ in range(2):
        assert any("b.yaml:2" in error for error in errors_of(root))


def test_a_reload_resolves_again_only_what_changed_and_what_depends_on_it(
    tmp_path: Path,
) -> None:
    """An unchanged installation keeps its resolution; one whose provider changed is resolved
    again, and sees the new values."""
    db = "package: postgres\nvalues: {{POSTGRES_PASSWORD: '${{secret:pw}}', POSTGRES_USER: {user}}}\n"
    root = write_repo(
        tmp_path,
        {
            "db.yaml": db.format(user="alice"),
            "feeds.yaml": "package: miniflux\nvalues: {ADMIN_PASSWORD: '${secret:admin}'}\n",
            "blog.yaml": "compose: {services: {web: {image: nginx:1.27}}}\n",
        },
    )

    def resolved() -> dict[str, DesiredInstallation]:
        catalog = Catalog([builtin_catalog_dir()])
        return {i.name: i for i in resolve(load_repo(root), catalog)}

    first = resolved()
    (root / "packages" / "db.yaml").write_text(db.format(user="bob"))
    second = resolved()

    assert second["blog"].containers is first["blog"].containers
    assert second["db"].containers is not first["db"].containers
    assert second["feeds"].containers is not first["feeds"].containers  # it uses db's USER
    (feeds,) = second["feeds"].containers
    assert "postgres://bob:" in dict(feeds.environment)["DATABASE_URL"]
