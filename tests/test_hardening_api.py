"""The API against a hostile or unlucky client: principals that lose their power, bodies that
are not JSON or too big, replayed webhooks, connections that never finish.

Served for real (uvicorn on a unix socket and loopback TCP, see test_api_auth) over a real
store; users are removed and demoted with the `nebula` CLI, as an admin would.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from nebula.identity import accounts
from nebula.identity.sessions import Sessions
from nebula.store import Store
from test_api_auth import KEY, PASSWORD, Api, login, serving
from test_identity import cli_env, run  # noqa: F401 (the fixture, used by name)

CACHE = 0.5  # how long the daemon trusts a verified bearer in these tests


def fast_sessions(root: Path) -> Sessions:
    return Sessions(Store(f"sqlite:///{root}/nebula.db"), KEY, cache_seconds=CACHE)


def access_token(api: Api, user: str) -> str:
    with api.tcp() as client:
        response = login(client, user)
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token


# -- principals that lose their power ---------------------------------------------------------------


@pytest.mark.usefixtures("cli_env")  # the CLI and the daemon share tmp_path's database
def test_a_removed_admins_token_and_the_keys_it_made_stop_working(tmp_path: Path) -> None:
    with serving(tmp_path, sessions=fast_sessions(tmp_path)) as api:
        accounts.add_user(api.store, "mallory", PASSWORD, "admin")
        token = access_token(api, "mallory")
        with api.tcp(token) as mallory:
            made = mallory.post("/api/v1/apikeys", json={"name": "backdoor", "scope": "admin"})
            assert made.status_code == 201, made.text
        backdoor = made.json()["token"]
        with api.tcp(backdoor) as key:  # a key made by that key goes too
            second = key.post("/api/v1/apikeys", json={"name": "backdoor2", "scope": "admin"})
            assert second.status_code == 201, second.text
        _, unrelated = accounts.create_key(api.store, "grafana", "read")

        out = json.loads(run("user", "rm", "mallory", "--output", "json"))
        assert out["revoked_keys"] == [made.json()["key"]["prefix"], second.json()["key"]["prefix"]]
        time.sleep(CACHE + 0.1)

        with api.tcp(token) as mallory:
            refused = mallory.post("/api/v1/apikeys", json={"name": "another", "scope": "admin"})
            assert refused.status_code == 401, refused.text
            assert refused.json() == {"error": "invalid bearer token"}
        for key_token in (backdoor, second.json()["token"]):
            with api.tcp(key_token) as client:
                assert client.get("/api/v1/status").status_code == 401
        with api.tcp(unrelated) as grafana:
            assert grafana.get("/api/v1/status").status_code == 200
        assert {k.name for k in accounts.keys(api.store)} == {"grafana"}

        # A new user of the same name is someone else: the old token is still worth nothing.
        accounts.add_user(api.store, "mallory", PASSWORD, "admin")
        with api.tcp(token) as client:
            assert client.get("/api/v1/status").status_code == 401


@pytest.mark.usefixtures("cli_env")
def test_a_demoted_users_token_loses_the_higher_role(tmp_path: Path) -> None:
    with serving(tmp_path, sessions=fast_sessions(tmp_path)) as api:
        accounts.add_user(api.store, "ada", PASSWORD, "admin")
        token = access_token(api, "ada")
        with api.tcp(token) as ada:
            admin_key = ada.post("/api/v1/apikeys", json={"name": "adm", "scope": "admin"})
            read_key = ada.post("/api/v1/apikeys", json={"name": "dash", "scope": "read"})
            assert admin_key.status_code == read_key.status_code == 201

        assert "ada is now a viewer" in run("user", "role", "ada", "viewer")
        assert "unknown role 'root'" in run("user", "role", "ada", "root", code=2)
        time.sleep(CACHE + 0.1)

        with api.tcp(token) as ada:
            assert ada.get("/api/v1/auth/whoami").json()["role"] == "viewer"
            assert ada.get("/api/v1/status").status_code == 200
            refused = ada.post("/api/v1/apikeys", json={"name": "x", "scope": "admin"})
            assert refused.status_code == 403
            assert "ada is a viewer" in refused.json()["error"]
            assert ada.post("/api/v1/suspend").status_code == 403
        with api.tcp(admin_key.json()["token"]) as client:  # above the new role: revoked
            assert client.get("/api/v1/status").status_code == 401
        with api.tcp(read_key.json()["token"]) as client:  # within it: kept
            assert client.get("/api/v1/status").status_code == 200
        with api.tcp() as client:  # a new login gets the new role
            assert login(client).json()["role"] == "viewer"


def test_a_token_without_a_user_id_is_refused(tmp_path: Path) -> None:
    """Tokens made before users were checked by id name no user: they are refused."""
    import jwt

    with serving(tmp_path) as api:
        accounts.add_user(api.store, "ada", PASSWORD, "admin")
        now = int(time.time())
        claims = {"iss": "nebulad", "sub": "ada", "role": "admin", "typ": "access"}
        old = jwt.encode({**claims, "iat": now, "exp": now + 600}, KEY, algorithm="HS256")
        with api.tcp(old) as client:
            assert client.get("/api/v1/status").status_code == 401
