"""The state store, on SQLite and on PostgreSQL (every `database_url` test runs on both)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from nebula.errors import StoreError
from nebula.store import PackageRecord, Store
from nebula.store import db as store_db
from nebula.store.models import Base, Deployment, Installation, MarketplacePackage


def package(name: str, version: str = "1.0", **manifest: object) -> PackageRecord:
    return PackageRecord(
        name=name,
        display_name=name.title(),
        description=f"{name} for tests",
        category="test",
        icon_url=None,
        repository=f"docker.io/library/{name}",
        version=version,
        manifest={"name": name, "version": version, **manifest},
    )


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    with Store(database_url) as s:
        s.sync_packages([package("wordpress", "6.4.2"), package("redis", "7.2")])
        yield s


@pytest.fixture
def raw(database_url: str) -> Iterator[sa.Engine]:
    """A plain engine on the same database, to look under the API."""
    engine = sa.create_engine(database_url)
    yield engine
    engine.dispose()


def deploy(store: Store, name: str = "blog", *, ok: bool = True, reason: str | None = None) -> str:
    deployment = store.begin_deployment(
        name,
        package="wordpress",
        version="6.4.2",
        config={"PORT": "8080"},
        spec_hash="h1",
        summary=f"install {name}",
    )
    store.finish_deployment(deployment, ok=ok, reason=reason, container_ids=[f"{name}-ctr"])
    return deployment


# -- opening and migrations -----------------------------------------------------------------


def test_empty_database_is_migrated_to_head_and_reopens(database_url: str, raw: sa.Engine) -> None:
    Store(database_url).close()
    Store(database_url).close()  # idempotent: already at head

    with raw.connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
        version = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()
    assert {"marketplace_packages", "installations", "deployments"} <= tables
    assert version == store_db.HEAD_REVISION


def test_migrations_build_exactly_the_models_schema(database_url: str, raw: sa.Engine) -> None:
    Store(database_url).close()

    with raw.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), Base.metadata)

    assert differences == []


def test_head_revision_constant_is_the_newest_migration() -> None:
    config = Config()
    config.set_main_option("script_location", str(store_db.MIGRATIONS_DIR))

    assert ScriptDirectory.from_config(config).get_current_head() == store_db.HEAD_REVISION


def test_opening_a_database_at_head_does_not_load_alembic(database_url: str) -> None:
    Store(database_url).close()
    probe = (
        "import sys; from nebula.store import Store; "
        f"Store({database_url!r}).close(); print('alembic' in sys.modules)"
    )

    result = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True
    )

    assert result.stdout.strip() == "False"


def test_a_pooled_connection_is_pinged_after_sitting_idle_and_replaced_when_dropped(
    database_url: str, raw: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Connections taken out one after another are not pinged; one that sat idle is, and one
    the server dropped meanwhile (a restart, a firewall) is replaced, not a failed request."""
    monkeypatch.setattr(store_db, "PING_AFTER_IDLE_S", 0.3)
    with Store(database_url) as store:
        pings = []
        ping = store.engine.dialect.do_ping
        monkeypatch.setattr(
            store.engine.dialect, "do_ping", lambda dbapi: pings.append(1) or ping(dbapi)
        )
        store.set_setting("k", "1")
        for _ in range(3):
            assert store.setting("k") == "1"
        assert pings == []
        if store.engine.dialect.name == "postgresql":
            with raw.connect() as admin:
                dropped = admin.scalar(
                    sa.text(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                )
            assert dropped >= 1
        time.sleep(0.4)
        assert store.setting("k") == "1"
        assert pings == [1]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("not a database url", "invalid database URL"),
        ("mysql://nebula:s3cret@127.0.0.1/nebula", "unsupported database"),
        ("postgresql+psycopg://nebula:s3cret@127.0.0.1:1/nebula", "cannot open database"),
        ("sqlite:////nonexistent-dir/nebula.db", "cannot open database"),
    ],
)
def test_bad_url_raises_store_error_naming_the_url_without_password(
    url: str, expected: str
) -> None:
    with pytest.raises(StoreError) as caught:
        Store(url)

    message = str(caught.value)
    assert expected in message
    assert "s3cret" not in message
    if "s3cret" in url:
        assert "nebula:***@127.0.0.1" in message


def test_default_url_prefers_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEBULA_DATABASE_URL", "postgresql+psycopg://nebula@db/nebula")

    assert Store.default_url() == "postgresql+psycopg://nebula@db/nebula"


def test_default_url_is_a_sqlite_file_in_the_user_data_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("NEBULA_DATABASE_URL", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))

    url = Store.default_url()

    assert url == f"sqlite:///{tmp_path}/data/nebula/nebula.db"
    assert (tmp_path / "data" / "nebula").is_dir()


# -- packages --------------------------------------------------------------------------------


def test_sync_packages_inserts_and_updates_by_name(store: Store, raw: sa.Engine) -> None:
    def rows() -> dict[str, sa.Row[tuple[str | None, dict[str, object], object]]]:
        query = sa.select(
            MarketplacePackage.name,
            MarketplacePackage.version,
            MarketplacePackage.manifest,
            MarketplacePackage.updated_at,
        )
        with raw.connect() as conn:
            return {row.name: row for row in conn.execute(query)}

    before = rows()
    store.sync_packages(
        [package("wordpress", "6.5.0", ports=[80]), package("redis", "7.2"), package("gitea")]
    )
    after = rows()

    assert set(after) == {"wordpress", "redis", "gitea"}
    assert after["wordpress"].version == "6.5.0"
    assert after["wordpress"].manifest == {"name": "wordpress", "version": "6.5.0", "ports": [80]}
    assert after["wordpress"].updated_at > before["wordpress"].updated_at
    assert after["redis"].updated_at == before["redis"].updated_at  # unchanged, untouched


def test_sync_packages_takes_the_last_record_of_a_repeated_name(
    store: Store, raw: sa.Engine
) -> None:
    store.sync_packages([package("gitea", "1.0"), package("gitea", "1.1")])

    with raw.connect() as conn:
        versions = conn.execute(
            sa.select(MarketplacePackage.version).where(MarketplacePackage.name == "gitea")
        ).scalars()
        assert list(versions) == ["1.1"]


# -- deployments -----------------------------------------------------------------------------


def test_deployment_lifecycle(store: Store, raw: sa.Engine) -> None:
    deployment = store.begin_deployment(
        "blog",
        package="wordpress",
        version="6.4.2",
        config={"PORT": "8080", "nested": {"a": [1, 2]}},
        spec_hash="h1",
        summary="install blog",
    )

    (installing,) = store.installations()
    assert (installing.name, installing.package, installing.status) == (
        "blog",
        "wordpress",
        "installing",
    )
    (started,) = store.deployments()
    assert (started.id, started.status, started.finished_at) == (deployment, "deploying", None)

    store.finish_deployment(
        deployment, ok=True, reason=None, container_ids=["c1", "c2"], hook_output="hello"
    )

    (running,) = store.installations()
    assert running.status == "running"
    assert running.container_ids == ("c1", "c2")
    assert (running.version, running.spec_hash) == ("6.4.2", "h1")
    assert running.installed_at.tzinfo == UTC
    assert running.updated_at >= running.installed_at
    (live,) = store.deployments("blog")
    assert (live.status, live.error, live.hook_output, live.summary) == (
        "live",
        None,
        "hello",
        "install blog",
    )
    assert live.deployed_at is not None
    assert live.finished_at == live.deployed_at
    assert live.created_at.tzinfo == UTC
    with raw.connect() as conn:
        config = conn.execute(sa.select(Installation.config)).scalar_one()
    assert config == {"PORT": "8080", "nested": {"a": [1, 2]}}


def test_failed_deployment_marks_the_installation_in_error(store: Store) -> None:
    deploy(store, ok=True)

    failed = store.begin_deployment(
        "blog",
        package="wordpress",
        version="6.5.0",
        config={},
        spec_hash="h2",
        summary="upgrade blog to 6.5.0",
    )
    store.finish_deployment(failed, ok=False, reason="image not found", container_ids=[])

    (blog,) = store.installations()
    assert (blog.status, blog.status_reason, blog.version) == ("error", "image not found", "6.5.0")
    newest, oldest = store.deployments("blog")
    assert (newest.id, newest.status, newest.error) == (failed, "failed", "image not found")
    assert newest.deployed_at is None
    assert oldest.status == "live"


def test_deployments_are_newest_first_filtered_and_limited(store: Store) -> None:
    first = deploy(store, "blog")
    second = deploy(store, "cache")
    third = deploy(store, "blog")

    assert [d.id for d in store.deployments()] == [third, second, first]
    assert [d.id for d in store.deployments("blog")] == [third, first]
    assert [d.id for d in store.deployments(limit=1)] == [third]
    assert store.deployments("nothing") == []


def test_an_older_deployment_finishing_late_does_not_override_a_newer_one(store: Store) -> None:
    older = store.begin_deployment(
        "blog", package="wordpress", version="1", config={}, spec_hash="a", summary="a"
    )
    newer = store.begin_deployment(
        "blog", package="wordpress", version="2", config={}, spec_hash="b", summary="b"
    )

    store.finish_deployment(older, ok=False, reason="superseded", container_ids=[])
    assert store.installations()[0].status == "installing"

    store.finish_deployment(newer, ok=True, reason=None, container_ids=["c"])
    assert store.installations()[0].status == "running"


def test_inline_app_has_no_package(store: Store) -> None:
    deployment = store.begin_deployment(
        "whoami", package=None, version=None, config={}, spec_hash="x", summary="inline compose"
    )
    store.finish_deployment(deployment, ok=True, reason=None, container_ids=["c"])

    (whoami,) = store.installations()
    assert (whoami.name, whoami.package, whoami.status) == ("whoami", None, "running")


def test_unknown_package_is_refused(store: Store) -> None:
    with pytest.raises(StoreError, match="'ghost' is not in the store"):
        store.begin_deployment(
            "ghost", package="ghost", version="1", config={}, spec_hash="x", summary="x"
        )

    assert store.installations() == []


def test_finishing_twice_or_an_unknown_deployment_is_an_error(store: Store) -> None:
    deployment = deploy(store)

    with pytest.raises(StoreError, match="already finished"):
        store.finish_deployment(deployment, ok=True, reason=None, container_ids=[])
    with pytest.raises(StoreError, match="no deployment"):
        store.finish_deployment("no-such-id", ok=True, reason=None, container_ids=[])


def test_removing_an_installation_keeps_its_deployment_history(
    store: Store, raw: sa.Engine
) -> None:
    deployment = deploy(store, "blog")
    deploy(store, "cache")

    store.remove_installation("blog")
    store.remove_installation("blog")  # idempotent

    assert [i.name for i in store.installations()] == ["cache"]
    (history,) = store.deployments("blog")
    assert (history.id, history.installation, history.status) == (deployment, "blog", "live")
    with raw.connect() as conn:
        orphan = conn.execute(
            sa.select(Deployment.installation_id).where(Deployment.id == deployment)
        ).scalar_one()
    assert orphan is None  # ON DELETE SET NULL, also on SQLite


def test_reinstalling_after_removal_starts_a_fresh_installation(store: Store) -> None:
    deploy(store, "blog")
    store.mark_post_install_done("blog")
    store.remove_installation("blog")

    deploy(store, "blog")

    assert store.post_install_done("blog") is False
    assert len(store.deployments("blog")) == 2


# -- post-install hooks ----------------------------------------------------------------------


def test_post_install_flag_is_set_once_and_survives_redeploys(store: Store) -> None:
    assert store.post_install_done("blog") is False  # unknown installation

    deploy(store, "blog")
    assert store.post_install_done("blog") is False
    store.mark_post_install_done("blog")
    assert store.post_install_done("blog") is True

    deploy(store, "blog")
    assert store.post_install_done("blog") is True


def test_marking_post_install_of_an_unknown_installation_is_an_error(store: Store) -> None:
    with pytest.raises(StoreError, match="no installation 'ghost'"):
        store.mark_post_install_done("ghost")


def test_syncs_are_recorded_newest_first_and_settings_persist(database_url: str) -> None:
    with Store(database_url) as store:
        first = store.start_sync(commit="a" * 40, author="ada", message="add blog", trigger="hook")
        done = store.finish_sync(
            first,
            status="failed",
            errors=["packages/blog.yaml:3:5: compose.services.web.imagee: unknown field"],
            summary={"create": 0, "update": 0, "delete": 0, "noop": 0},
        )
        assert done.status == "failed" and done.duration_ms is not None
        assert done.errors[0].startswith("packages/blog.yaml:3:5")
        second = store.start_sync(commit="b" * 40, author="ada", message="fix", trigger="poll")
        store.finish_sync(
            second,
            status="succeeded",
            changes=[{"action": "create", "kind": "container", "name": "blog-web"}],
        )
        store.set_sync_status(second, "held")
        assert [s.id for s in store.syncs()] == [second, first]
        held = store.sync(second)
        assert held is not None and held.status == "held"
        assert held.changes == ({"action": "create", "kind": "container", "name": "blog-web"},)
        assert store.sync(9999) is None
        assert store.setting("suspended") is None
        store.set_setting("suspended", "1")
        store.set_setting("suspended", "0")
    with Store(database_url) as store:
        assert store.setting("suspended") == "0"


def test_an_installation_remembers_the_commit_it_was_applied_from(database_url: str) -> None:
    with Store(database_url) as store:
        deployment = store.begin_deployment(
            "notes", package=None, version=None, config={}, spec_hash="h", summary="", commit="c1"
        )
        store.finish_deployment(deployment, ok=True, reason=None, container_ids=["x"])
        failed = store.begin_deployment(
            "notes", package=None, version=None, config={}, spec_hash="h", summary="", commit="c2"
        )
        store.finish_deployment(failed, ok=False, reason="boom", container_ids=["x"])
        (info,) = store.installations()
        assert info.commit == "c1"  # a failed deployment does not claim the newer commit


def test_syncs_cut_short_by_a_dead_daemon_are_closed_at_start(database_url: str) -> None:
    with Store(database_url) as store:
        cut = store.start_sync(commit="c", author=None, message=None, trigger="hook")
        done = store.start_sync(commit="d", author=None, message=None, trigger="poll")
        store.finish_sync(done, status="succeeded")
        assert store.interrupt_running_syncs("interrupted") == 1
        closed = store.sync(cut)
        assert closed is not None and (closed.status, closed.errors) == ("failed", ("interrupted",))
        assert closed.finished_at is not None
        assert store.interrupt_running_syncs("interrupted") == 0
