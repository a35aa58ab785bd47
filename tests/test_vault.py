"""The vault against real SQLite and PostgreSQL stores: encryption at rest, a wrong master key,
tampered rows, a master-key rotation SIGKILLed half-way, and the `nebula secrets` commands."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from nebula.cli.app import app
from nebula.secrets import (
    MasterKeyError,
    NotInitializedError,
    TamperedSecretError,
    UnknownSecretError,
    Vault,
    VaultError,
    open_vault,
)
from nebula.secrets.keys import EnvironmentKey, KeyFile, locate
from nebula.store import Store

PLAIN = "correct-horse-battery-staple-4711"


@pytest.fixture
def key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every vault of the test (and its subprocesses) keeps its master key in this file."""
    path = tmp_path / "keys" / "master.key"
    monkeypatch.setenv("NEBULA_MASTER_KEY_FILE", str(path))
    monkeypatch.delenv("NEBULA_MASTER_KEY", raising=False)
    return path


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    with Store(database_url) as opened:
        yield opened


@pytest.fixture
def vault(store: Store, key_file: Path) -> Vault:
    vault = open_vault(store)
    vault.init()
    return vault


def raw(store: Store, sql: str, **params: object) -> list[tuple[object, ...]]:
    with store.transaction() as session:
        result = session.execute(text(sql), params)
        return [tuple(row) for row in result] if result.returns_rows else []


def test_values_are_sealed_and_read_back(vault: Vault, store: Store, key_file: Path) -> None:
    info = vault.set("db.password", PLAIN)
    vault.set("api-token", "t0k3n")
    assert vault.reveal("db.password") == PLAIN
    assert vault.reveal_many(["api-token", "db.password"]) == {
        "api-token": "t0k3n",
        "db.password": PLAIN,
    }
    assert vault.fingerprints() == {
        "db.password": info.fingerprint,
        "api-token": vault.info("api-token").fingerprint,
    }
    assert info.masked == "••••" + info.fingerprint and len(info.fingerprint) == 12
    (row,) = raw(store, "SELECT ciphertext, wrapped_key FROM secrets WHERE name = 'db.password'")
    assert PLAIN.encode() not in bytes(row[0]) + bytes(row[1])  # type: ignore[arg-type]
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    # a new value gets a new fingerprint and a rotated time; the same value, the same one
    again = vault.set("db.password", PLAIN)
    assert again.fingerprint == info.fingerprint and again.rotated_at is not None
    assert vault.rotate("db.password", "other").fingerprint != info.fingerprint
    with pytest.raises(UnknownSecretError, match="nebula secrets set nope"):
        vault.reveal("nope")


def test_fingerprints_are_keyed_so_they_offer_no_guessing_oracle(
    store: Store, tmp_path: Path
) -> None:
    first = open_vault(store, KeyFile(tmp_path / "a.key"))
    first.init()
    with Store(f"sqlite:///{tmp_path}/other.db") as other_store:
        second = open_vault(other_store, KeyFile(tmp_path / "b.key"))
        second.init()
        # the same short password has unrelated fingerprints in two vaults
        assert first.set("pin", "1234").fingerprint != second.set("pin", "1234").fingerprint


def test_a_wrong_master_key_is_refused_and_changes_nothing(
    vault: Vault, store: Store, tmp_path: Path
) -> None:
    vault.set("db.password", PLAIN)
    before = raw(store, "SELECT * FROM secrets ORDER BY name")
    keys_before = raw(store, "SELECT key_id, state FROM vault_keys")
    wrong = EnvironmentKey(base64.b64encode(os.urandom(32)).decode())
    intruder = open_vault(store, wrong)
    for attempt in (
        lambda: intruder.reveal("db.password"),
        lambda: intruder.set("db.password", "overwritten"),
        lambda: intruder.set("new", "value"),
        intruder.rotate_key,
    ):
        with pytest.raises(MasterKeyError) as caught:
            attempt()
        assert PLAIN not in str(caught.value)
    with pytest.raises(MasterKeyError, match=r"wrong master key.*nothing was changed"):
        intruder.reveal("db.password")
    assert raw(store, "SELECT * FROM secrets ORDER BY name") == before
    assert raw(store, "SELECT key_id, state FROM vault_keys") == keys_before
    assert vault.reveal("db.password") == PLAIN
    missing = open_vault(store, KeyFile(tmp_path / "nowhere.key"))
    with pytest.raises(MasterKeyError, match="no master key in key file"):
        missing.reveal("db.password")


def test_an_uninitialized_vault_says_to_run_init(store: Store, key_file: Path) -> None:
    with pytest.raises(NotInitializedError, match="nebula secrets init"):
        open_vault(store).set("a", "b")
    first = open_vault(store).init()
    again = open_vault(store).init()  # idempotent: the same key, adopted
    assert first.created and not again.created and again.key_id == first.key_id


@pytest.mark.parametrize(
    "tamper",
    [
        "UPDATE secrets SET ciphertext = :other_ct WHERE name = 'db.password'",  # swapped value
        "UPDATE secrets SET wrapped_key = :other_key, key_nonce = :other_key_nonce, "
        "ciphertext = :other_ct, nonce = :other_nonce WHERE name = 'db.password'",  # whole row
        "UPDATE secrets SET fingerprint = 'aaaaaaaaaaaa' WHERE name = 'db.password'",
    ],
)
def test_tampered_rows_are_detected_by_name_without_the_value(
    vault: Vault, store: Store, tamper: str
) -> None:
    vault.set("db.password", PLAIN)
    vault.set("guest.password", "guest")
    ((ct, nonce, key, key_nonce),) = raw(
        store,
        "SELECT ciphertext, nonce, wrapped_key, key_nonce FROM secrets "
        "WHERE name = 'guest.password'",
    )
    raw(store, tamper, other_ct=ct, other_nonce=nonce, other_key=key, other_key_nonce=key_nonce)
    with pytest.raises(
        TamperedSecretError, match=r"'db\.password' failed its integrity check"
    ) as e:
        open_vault(store).reveal("db.password")
    assert PLAIN not in str(e.value)
    assert open_vault(store).reveal("guest.password") == "guest"


def test_a_flipped_bit_is_detected(vault: Vault, store: Store) -> None:
    vault.set("token", PLAIN)
    ((ct,),) = raw(store, "SELECT ciphertext FROM secrets WHERE name = 'token'")
    flipped = bytearray(bytes(ct))  # type: ignore[arg-type]
    flipped[3] ^= 0x01
    raw(store, "UPDATE secrets SET ciphertext = :ct WHERE name = 'token'", ct=bytes(flipped))
    with pytest.raises(TamperedSecretError, match="'token'"):
        open_vault(store).reveal("token")


def test_key_sources(tmp_path: Path, store: Store) -> None:
    exposed = KeyFile(tmp_path / "loose.key")
    exposed.save("current", os.urandom(32))
    exposed.path.chmod(0o644)
    with pytest.raises(MasterKeyError, match=r"readable by others \(mode 644\); run `chmod 600"):
        exposed.load("current")
    with pytest.raises(MasterKeyError, match="expected 32 bytes in base64"):
        EnvironmentKey("not base64!").load("current")
    env = {"NEBULA_MASTER_KEY": base64.b64encode(os.urandom(32)).decode()}
    from_env = locate(env)
    assert isinstance(from_env, EnvironmentKey)
    vault = open_vault(store, from_env)
    vault.init()
    vault.set("a", "b")
    with pytest.raises(MasterKeyError, match="cannot change"):
        vault.rotate_key()
    assert locate({"NEBULA_MASTER_KEY_FILE": str(tmp_path / "k")}) == KeyFile(tmp_path / "k")


# -- rotate-key killed half-way ------------------------------------------------------------------

KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path

    from nebula.secrets import open_vault
    from nebula.secrets.keys import KeyFile
    from nebula.store import Store

    url, path, point, after = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

    class PromotionKiller(KeyFile):
        def save(self, slot, key):
            if slot == "current":  # the store has switched keys; the key file not yet
                os.kill(os.getpid(), signal.SIGKILL)
            super().save(slot, key)

    moved = []
    def on_moved(name):
        moved.append(name)
        if point == "rows" and len(moved) == after:
            os.kill(os.getpid(), signal.SIGKILL)

    keys = PromotionKiller(Path(path)) if point == "promotion" else KeyFile(Path(path))
    with Store(url) as store:
        open_vault(store, keys).rotate_key(on_moved)
    """
)


@pytest.mark.parametrize("point", ["rows", "promotion"])
def test_rotate_key_killed_half_way_keeps_every_secret_readable_and_a_rerun_finishes(
    vault: Vault, store: Store, database_url: str, key_file: Path, point: str
) -> None:
    values = {f"s{i:02}": f"value-{i}-{os.urandom(4).hex()}" for i in range(25)}
    for name, value in values.items():
        vault.set(name, value)
    fingerprints = vault.fingerprints()
    old_key = key_file.read_text()
    done = subprocess.run(
        [sys.executable, "-c", KILLER, database_url, str(key_file), point, "10"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    next_file = key_file.with_name("master.key.next")
    assert next_file.exists()  # the new key was saved before anything moved
    wrapped_by = dict(raw(store, "SELECT key_id, count(*) FROM secrets GROUP BY key_id"))
    if point == "rows":
        assert sorted(wrapped_by.values()) == [10, 15]  # really half-way
    # every secret is readable by a fresh reader, and nothing was lost or changed
    assert open_vault(store).reveal_many(values) == values
    assert open_vault(store).fingerprints() == fingerprints

    result = open_vault(store).rotate_key()
    assert result.moved == (15 if point == "rows" else 0)
    states = dict(raw(store, "SELECT state, count(*) FROM vault_keys GROUP BY state"))
    assert states == {"active": 1, "retired": 1}
    ((active,),) = raw(store, "SELECT key_id FROM vault_keys WHERE state = 'active'")
    assert dict(raw(store, "SELECT key_id, count(*) FROM secrets GROUP BY key_id")) == {active: 25}
    assert not next_file.exists() and key_file.read_text() != old_key
    assert open_vault(store).reveal_many(values) == values
    assert open_vault(store).fingerprints() == fingerprints  # plans see no change


def test_rotate_key_moves_everything_and_the_old_key_no_longer_opens_it(
    vault: Vault, store: Store, key_file: Path
) -> None:
    vault.set("a", "1")
    old = key_file.read_text()
    result = vault.rotate_key()
    assert result.moved == 1 and result.old_key_id != result.new_key_id
    stale = EnvironmentKey(old.strip())
    with pytest.raises(MasterKeyError, match="wrong master key"):
        open_vault(store, stale).reveal("a")
    assert open_vault(store).reveal("a") == "1"


# -- the CLI -------------------------------------------------------------------------------------


def run(database_url: str, *args: str, stdin: str | None = None, code: int = 0) -> str:
    result = CliRunner().invoke(
        app, ["secrets", *args, "--database-url", database_url], input=stdin
    )
    output = result.stdout + result.stderr
    assert result.exit_code == code, output
    return output


def test_cli_set_get_list_rm_rotate(
    tmp_path: Path, database_url: str, key_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = run(database_url, "init")
    assert f"in key file {key_file}" in out and "Back it up" in out
    out = run(database_url, "set", "db.password", stdin=PLAIN + "\n")
    assert PLAIN not in out and "${secret:db.password}" in out
    masked = run(database_url, "get", "db.password")
    assert PLAIN not in masked and "••••" in masked
    assert run(database_url, "get", "db.password", "--reveal").strip() == PLAIN
    assert "secret name 'bad name' is not valid" in run(
        database_url, "set", "bad name", stdin="x", code=2
    )
    assert "no secret 'nope'" in run(database_url, "get", "nope", code=2)
    warned = run(database_url, "set", "inline", "--value", "v4lue")
    assert "shell history" in warned

    repo = tmp_path / "repo"
    (repo / "packages").mkdir(parents=True)
    (repo / "packages" / "db.yaml").write_text(
        "compose:\n  services:\n    db:\n      image: x:1\n"
        "      environment: {PASSWORD: '${secret:db.password}', OTHER: '${secret:gone}'}\n"
    )
    listing = json.loads(run(database_url, "list", "--repo", str(repo), "--output", "json"))
    rows = {s["name"]: s for s in listing["secrets"]}
    assert rows["db.password"]["used_by"] == ["db"] and rows["inline"]["used_by"] == []
    assert listing["missing"] == [{"name": "gone", "used_by": ["db"]}]
    assert PLAIN not in json.dumps(listing)

    refused = run(database_url, "rm", "db.password", "--repo", str(repo), code=1)
    assert "used by db" in refused and "--force" in refused
    before = rows["db.password"]["fingerprint"]
    rotated = run(database_url, "rotate", "db.password", "--output", "json")
    assert json.loads(rotated)["fingerprint"] != before
    assert run(database_url, "get", "db.password", "--reveal").strip() != PLAIN
    out = run(database_url, "rotate-key")
    assert "re-wrapped" in out
    run(database_url, "rm", "db.password", "--repo", str(repo), "--force")
    assert "no secret 'db.password'" in run(database_url, "get", "db.password", code=2)

    monkeypatch.setenv("NEBULA_MASTER_KEY", base64.b64encode(os.urandom(32)).decode())
    wrong = run(database_url, "get", "inline", "--reveal", code=1)
    assert "wrong master key" in wrong and "v4lue" not in wrong


def test_the_sqlite_file_never_holds_a_plain_value(tmp_path: Path, key_file: Path) -> None:
    url = f"sqlite:///{tmp_path}/vault.db"
    with Store(url) as store:
        vault = open_vault(store)
        vault.init()
        vault.set("db.password", PLAIN)
        vault.rotate("db.password", PLAIN + "-2")
        vault.rotate_key()
        assert vault.reveal("db.password") == PLAIN + "-2"
    data = b"".join(p.read_bytes() for p in tmp_path.glob("vault.db*"))
    assert b"db.password" in data  # the name is there; no value is
    assert PLAIN.encode() not in data
    assert key_file.read_bytes() not in data


def test_errors_never_echo_the_value(vault: Vault) -> None:
    with pytest.raises(VaultError) as caught:
        vault.set("x", "y" * 70000)
    assert "yyyy" not in str(caught.value)


def test_the_os_keyring_holds_the_master_key_when_one_is_usable(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    import keyring
    from keyrings.alt.file import PlaintextKeyring

    class Ring(PlaintextKeyring):  # a real keyring backend, its file in the test's tmp dir
        @property
        def file_path(self) -> str:
            return str(tmp_path / "keyring.cfg")

    monkeypatch.delenv("NEBULA_MASTER_KEY", raising=False)
    monkeypatch.delenv("NEBULA_MASTER_KEY_FILE", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    previous = keyring.get_keyring()
    keyring.set_keyring(Ring())
    try:
        vault = open_vault(store)
        created = vault.init()
        assert created.created and "the OS keyring (Ring, service 'nebula')" in created.where
        vault.set("db.password", PLAIN)
        vault.rotate_key()
        assert keyring.get_password("nebula", "master-key.next") is None
        assert open_vault(store).reveal("db.password") == PLAIN
        assert not (tmp_path / "config").exists()  # no key file was written
        assert PLAIN not in (tmp_path / "keyring.cfg").read_text()
    finally:
        keyring.set_keyring(previous)
