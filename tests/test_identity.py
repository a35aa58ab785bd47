"""Identity below the API: users, hashes, tokens and keys in the store (SQLite and PostgreSQL),
the signing key file, the rate limiter; and the CLI: `nebula user`, `nebula apikey`, `nebula
login` / `logout` against a served API, with the session kept in a 0600 file.
"""

from __future__ import annotations

import json
import os
import stat
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from nebula.cli.app import app
from nebula.errors import NebulaError
from nebula.identity import accounts
from nebula.identity.passwords import hash_password, verify_password
from nebula.identity.ratelimit import RateLimit, RateLimiter
from nebula.identity.sessions import AuthError, Sessions, TokenPair
from nebula.identity.tokens import load_signing_key
from nebula.store import Store
from nebula.store.identity import IdentityError
from test_api_auth import KEY, PASSWORD, Api, serving

runner = CliRunner()


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    with Store(database_url) as opened:
        yield opened


def all_rows(url: str) -> str:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return "\n".join(
                str(row)
                for table in ("users", "refresh_tokens", "api_keys")
                for row in conn.execute(sa.text(f"SELECT * FROM {table}"))
            )
    finally:
        engine.dispose()


def test_passwords_tokens_and_keys_are_stored_hashed(store: Store, database_url: str) -> None:
    accounts.add_user(store, "ada", PASSWORD, "admin")
    _, key = accounts.create_key(store, "ci", "write")
    _, node = accounts.create_key(store, "node2", "admin", service=True)
    pair = Sessions(store, KEY).login("ada", PASSWORD, "127.0.0.1")
    rows = all_rows(database_url)
    assert "scrypt$32768$8$1$" in rows
    for secret in (PASSWORD, key.split("_", 2)[2], node.split("_", 2)[2], pair.refresh_token):
        assert secret not in rows
    if database_url.startswith("sqlite"):
        raw = Path(database_url.removeprefix("sqlite:///")).read_bytes()
        assert PASSWORD.encode() not in raw and pair.refresh_token.encode() not in raw


def test_password_hashes_verify_in_constant_time_and_carry_their_parameters() -> None:
    stored = hash_password(PASSWORD)
    assert stored != hash_password(PASSWORD)  # salted
    assert verify_password(PASSWORD, stored)
    assert not verify_password(PASSWORD + "!", stored)
    assert not verify_password(PASSWORD, "md5$abc")
    assert not verify_password(PASSWORD, "scrypt$x$8$1$salt$hash")


def test_bad_user_input_is_refused_with_what_is_valid(store: Store) -> None:
    accounts.add_user(store, "ada", PASSWORD, "operator")
    cases = [
        (lambda: accounts.add_user(store, "ada", PASSWORD, "admin"), "user 'ada' already exists"),
        (lambda: accounts.add_user(store, "Ada Lovelace", PASSWORD, "admin"), "use 1 to 63 of"),
        (lambda: accounts.add_user(store, "bob", "short", "admin"), "at least 10 characters"),
        (lambda: accounts.add_user(store, "bob", PASSWORD, "root"), "use one of viewer, operator"),
        (lambda: accounts.remove_user(store, "bob"), "no user 'bob'"),
        (lambda: accounts.set_password(store, "bob", PASSWORD), "no user 'bob'"),
        (lambda: accounts.create_key(store, "ci", "everything"), "unknown scope 'everything'"),
        (lambda: accounts.revoke_key(store, "000000000000"), "no active API key"),
    ]
    for action, message in cases:
        with pytest.raises(IdentityError, match=message):
            action()
    accounts.create_key(store, "node2", "write", service=True)
    with pytest.raises(IdentityError, match="node 'node2' already has an active token"):
        accounts.create_key(store, "node2", "write", service=True)
    assert [u.name for u in accounts.users(store)] == ["ada"]


def test_refresh_reuse_and_password_change_end_sessions(store: Store) -> None:
    accounts.add_user(store, "ada", PASSWORD, "viewer")
    sessions = Sessions(store, KEY)
    first = sessions.login("ada", PASSWORD, "10.0.0.1")
    second = sessions.refresh(first.refresh_token)
    with pytest.raises(AuthError, match="already used") as reused:
        sessions.refresh(first.refresh_token)
    assert reused.value.status == 401
    with pytest.raises(AuthError, match="invalid, expired or revoked"):
        sessions.refresh(second.refresh_token)
    other = sessions.login("ada", PASSWORD, "10.0.0.1")
    accounts.set_password(store, "ada", "a whole new passphrase")
    with pytest.raises(AuthError, match="revoked"):
        sessions.refresh(other.refresh_token)
    with pytest.raises(AuthError, match="wrong user name or password"):
        sessions.login("ada", PASSWORD, "10.0.0.1")
    after = sessions.login("ada", "a whole new passphrase", "10.0.0.1")
    accounts.remove_user(store, "ada")
    with pytest.raises(AuthError):
        sessions.refresh(after.refresh_token)
    # The access token names a user that is gone: it is worth nothing either.
    assert sessions.verify_bearer(after.access_token) is None


def test_the_signing_key_is_a_private_file_made_once(tmp_path: Path) -> None:
    key = load_signing_key(tmp_path)
    path = tmp_path / "signing.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(key) == 32 and load_signing_key(tmp_path) == key
    path.chmod(0o644)
    with pytest.raises(IdentityError, match=r"readable by other users \(mode 0644\)"):
        load_signing_key(tmp_path)
    path.chmod(0o600)
    path.write_text("not hex")
    with pytest.raises(IdentityError, match="does not hold a signing key"):
        load_signing_key(tmp_path)


def test_token_buckets_refill_at_their_rate() -> None:
    now = [100.0]
    limiter = RateLimiter(RateLimit(rate=2.0, burst=2), clock=lambda: now[0])
    assert [limiter.take("a"), limiter.take("a")] == [0.0, 0.0]
    assert limiter.take("a") == pytest.approx(0.5)
    assert limiter.take("b") == 0.0  # buckets are per key
    now[0] += 0.5
    assert limiter.take("a") == 0.0
    with pytest.raises(ValueError, match="rate above 0"):
        RateLimit(rate=0, burst=1)


# -- the CLI ----------------------------------------------------------------------------------------


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NEBULA_DATABASE_URL", f"sqlite:///{tmp_path}/nebula.db")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("NEBULA_KEYRING", "0")
    for name in ("NEBULA_DAEMON", "NEBULA_TOKEN", "NEBULA_SOCKET"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def run(*args: str, stdin: str | None = None, code: int = 0) -> str:
    result = runner.invoke(app, list(args), input=stdin, env={"COLUMNS": "200"})
    output = result.stdout + result.stderr
    assert result.exit_code == code, output
    return output


def test_cli_manages_users_and_keys(cli_env: Path) -> None:
    assert "Added user ada (admin)" in run(
        "user", "add", "ada", "--role", "admin", "--password-stdin", stdin=PASSWORD + "\n"
    )
    out = run("user", "add", "bob", stdin=f"{PASSWORD}\n{PASSWORD}\n")  # the prompt, twice
    assert "Added user bob (viewer)" in out and PASSWORD not in out
    assert "already exists" in run(
        "user", "add", "bob", "--password-stdin", stdin=PASSWORD + "\n", code=2
    )
    assert "at least 10 characters" in run(
        "user", "add", "eve", "--password-stdin", stdin="short\n", code=2
    )
    users = json.loads(run("user", "list", "--output", "json"))
    assert [(u["name"], u["role"], u["failed_logins"]) for u in users] == [
        ("ada", "admin", 0),
        ("bob", "viewer", 0),
    ]
    assert "sessions are revoked" in run(
        "user", "passwd", "bob", "--password-stdin", stdin="another long one\n"
    )
    assert "Removed user bob" in run("user", "rm", "bob")
    assert "no user 'bob'" in run("user", "rm", "bob", code=2)

    made = json.loads(run("apikey", "create", "ci", "--scope", "write", "--output", "json"))
    assert made["token"].startswith(f"nbk_{made['id']}_") and made["scope"] == "write"
    node = run("apikey", "create", "node2", "--node", "--scope", "admin")
    assert "Service token for node node2 (admin)" in node and "nbs_" in node
    listed = run("apikey", "list")
    assert made["id"] in listed and "node2" in listed and made["token"] not in listed
    assert f"Revoked {made['id']} (ci)" in run("apikey", "revoke", made["id"])
    assert "no active API key" in run("apikey", "revoke", made["id"], code=2)
    assert [k["name"] for k in json.loads(run("apikey", "list", "-o", "json"))] == ["node2"]


@pytest.fixture
def daemon(cli_env: Path) -> Iterator[Api]:
    with serving(cli_env) as api:
        accounts.add_user(api.store, "ada", PASSWORD, "operator")
        yield api


def test_login_keeps_a_session_that_commands_use_and_refresh(daemon: Api, cli_env: Path) -> None:
    out = run("login", daemon.url, "--user", "ada", "--password-stdin", stdin=PASSWORD + "\n")
    assert f"Logged in to {daemon.url} as ada (operator)" in out
    file = cli_env / "config" / "nebula" / "credentials.json"
    assert f"kept in {file}" in out
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert "Sync requested" in run("sync", "now", "--daemon", daemon.url)

    # An expired access token is refreshed (and the rotated refresh token saved) on use.
    saved = json.loads(file.read_text())
    saved[daemon.url]["access_expires"] = 0
    file.write_text(json.dumps(saved))
    assert "Sync requested" in run("sync", "now", "--daemon", daemon.url)
    rotated = json.loads(file.read_text())[daemon.url]
    assert rotated["refresh_token"] != saved[daemon.url]["refresh_token"]
    assert rotated["access_expires"] > datetime.now(UTC).timestamp() + 800
    assert daemon.control.called("request_sync") == ["manual", "manual"]

    assert f"Logged out of {daemon.url}" in run("logout", daemon.url)
    assert json.loads(file.read_text()) == {}
    with pytest.raises(AuthError, match="revoked"):
        Sessions(daemon.store, KEY).refresh(rotated["refresh_token"])
    out = run("sync", "status", "--daemon", daemon.url, code=1)
    assert "missing bearer token" in out and "nebula login URL" in out


def test_a_refused_login_says_why(daemon: Api) -> None:
    out = run("login", daemon.url, "-u", "ada", "--password-stdin", stdin="wrong guess!\n", code=1)
    assert "login to" in out and "wrong user name or password" in out
    assert "not a URL" in run("login", "node1:7733", "-u", "ada", code=2)
    assert "not logged in" in run("logout", daemon.url, code=1)
    assert os.environ["NEBULA_KEYRING"] == "0"


def test_a_refresh_token_is_spent_once_even_by_racing_requests(store: Store) -> None:
    accounts.add_user(store, "ada", PASSWORD, "viewer")
    sessions = Sessions(store, KEY)
    token = sessions.login("ada", PASSWORD, "10.0.0.1").refresh_token
    barrier = threading.Barrier(4)
    outcomes: list[object] = []

    def spend() -> None:
        barrier.wait()
        try:
            outcomes.append(sessions.refresh(token))
        except NebulaError as exc:  # refused, or the database said the row moved under it
            outcomes.append(exc)

    threads = [threading.Thread(target=spend) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(outcomes) == 4
    assert sum(isinstance(o, TokenPair) for o in outcomes) == 1
