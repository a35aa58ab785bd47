"""Where `nebula login` keeps a daemon's tokens, and how the client gets a fresh access token.

One entry per daemon URL: the user, the refresh token, and the current access token with its
expiry. Kept in the OS keyring (service `nebula`, the URL as the account) when a real keyring
backend is available; otherwise in `credentials.json` in the user's config dir, mode 0600 (the
file's path is shown at login). `NEBULA_KEYRING=0` forces the file.

`access_token(url)` returns a token good for at least `MARGIN` more seconds, refreshing it
(and saving the rotated refresh token) when needed; None when not logged in.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from nebula.errors import NebulaError

SERVICE = "nebula"
MARGIN = 30.0  # refresh an access token this long before it expires


class LoginExpiredError(NebulaError):
    """The stored login no longer works: log in again."""


@dataclass(frozen=True)
class Login:
    user: str
    role: str
    refresh_token: str
    access_token: str
    access_expires: float  # Unix time


def normalize(url: str) -> str:
    return url.strip().rstrip("/")


def where() -> str:
    """Where logins are kept, for messages."""
    return "the OS keyring" if _keyring() is not None else str(credentials_file())


def credentials_file() -> Path:
    import platformdirs

    return Path(platformdirs.user_config_dir("nebula")) / "credentials.json"


def load(url: str) -> Login | None:
    url = normalize(url)
    ring = _keyring()
    raw = ring.get_password(SERVICE, url) if ring is not None else _read_file().get(url)
    if not raw:
        return None
    try:
        data = json.loads(raw) if isinstance(raw, str) else raw
        return Login(**data)
    except (TypeError, ValueError):
        return None


def save(url: str, login: Login) -> None:
    url = normalize(url)
    ring = _keyring()
    if ring is not None:
        ring.set_password(SERVICE, url, json.dumps(asdict(login)))
        return
    entries = _read_file()
    entries[url] = asdict(login)
    _write_file(entries)


def forget(url: str) -> bool:
    url = normalize(url)
    ring = _keyring()
    if ring is not None:
        import keyring.errors

        try:
            ring.delete_password(SERVICE, url)
        except keyring.errors.PasswordDeleteError:
            return False
        return True
    entries = _read_file()
    if entries.pop(url, None) is None:
        return False
    _write_file(entries)
    return True


def from_tokens(body: dict[str, Any]) -> Login:
    """A `Login` from the API's token answer (login or refresh)."""
    try:
        return Login(
            user=str(body["user"]),
            role=str(body["role"]),
            refresh_token=str(body["refresh_token"]),
            access_token=str(body["access_token"]),
            access_expires=time.time() + float(body["expires_in"]),
        )
    except (KeyError, TypeError, ValueError):
        raise NebulaError("nebulad answered the login without the tokens it should send") from None


def access_token(url: str, *, force_refresh: bool = False) -> str | None:
    """A current access token for `url` (refreshed when due), or None when not logged in."""
    login = load(url)
    if login is None:
        return None
    if not force_refresh and login.access_expires - MARGIN > time.time():
        return login.access_token
    try:
        response = httpx.post(
            f"{normalize(url)}/api/v1/auth/refresh",
            json={"refresh_token": login.refresh_token},
            timeout=httpx.Timeout(30.0, connect=5.0),
        )
    except httpx.TransportError:
        return login.access_token  # the request itself will report the daemon as unreachable
    if response.status_code != 200:
        forget(url)
        raise LoginExpiredError(
            f"your login to {normalize(url)} has ended ({_error(response)}): "
            f"run `nebula login {normalize(url)}` again"
        )
    fresh = from_tokens(response.json())
    save(url, fresh)
    return fresh.access_token


def _error(response: httpx.Response) -> str:
    with contextlib.suppress(ValueError, KeyError, TypeError):
        return str(response.json()["error"])
    return f"HTTP {response.status_code}"


def _keyring() -> Any:
    """The keyring backend, or None when there is no usable one (or NEBULA_KEYRING=0)."""
    if os.environ.get("NEBULA_KEYRING") == "0":
        return None
    try:
        import keyring
        from keyring.backends import fail
    except ImportError:
        return None
    backend = keyring.get_keyring()
    if isinstance(backend, fail.Keyring) or getattr(backend, "priority", 0) <= 0:
        return None
    return backend


def _read_file() -> dict[str, Any]:
    path = credentials_file()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        raise NebulaError(f"{path} is not readable JSON: remove it and log in again") from None
    return data if isinstance(data, dict) else {}


def _write_file(entries: dict[str, Any]) -> None:
    path = credentials_file()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(entries, handle, indent=2)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
