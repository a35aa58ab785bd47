"""Where the master key lives: the OS keyring, a key file, or an environment variable.

Which one (`locate`):
1. `NEBULA_MASTER_KEY` (the key, base64) when set: for daemons and CI; read only.
2. `NEBULA_MASTER_KEY_FILE` when set: a key file at that path.
3. The OS keyring (service `nebula`), when a usable backend exists and holds the key.
4. The key file in the user's config dir (`master.key`, mode 0600), when it exists.
5. For a new key: the keyring when usable, else that key file.

Each place has two slots: `current`, and `next`, which holds a new key while `rotate-key` moves
the secrets to it (so a rotation killed half-way can always be finished).
"""

from __future__ import annotations

import base64
import binascii
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from nebula.secrets.crypto import KEY_BYTES
from nebula.secrets.errors import MasterKeyError

ENV_KEY = "NEBULA_MASTER_KEY"
ENV_KEY_FILE = "NEBULA_MASTER_KEY_FILE"
KEYRING_SERVICE = "nebula"

Slot = Literal["current", "next"]


class KeyStore(Protocol):
    """A place holding the master key (and, during a rotation, the next one)."""

    @property
    def where(self) -> str:
        """Where the key lives, for messages (never the key)."""
        ...

    def load(self, slot: Slot) -> bytes | None: ...

    def save(self, slot: Slot, key: bytes) -> None: ...

    def delete(self, slot: Slot) -> None: ...


def encode(key: bytes) -> str:
    return base64.b64encode(key).decode()


def decode(text: str, where: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise MasterKeyError(
            f"the master key in {where} is not valid: expected {KEY_BYTES} bytes in base64 "
            "(as `nebula secrets init` writes it)"
        )
    return key


@dataclass(frozen=True)
class KeyFile:
    """A file holding the key in base64, readable by its owner only (mode 0600)."""

    path: Path

    @property
    def where(self) -> str:
        return f"key file {self.path}"

    def _path(self, slot: Slot) -> Path:
        return self.path if slot == "current" else self.path.with_name(self.path.name + ".next")

    def load(self, slot: Slot) -> bytes | None:
        path = self._path(slot)
        try:
            mode = path.stat().st_mode
            text = path.read_text()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise MasterKeyError(f"cannot read key file {path}: {exc.strerror}") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise MasterKeyError(
                f"key file {path} is readable by others (mode {stat.S_IMODE(mode):o}); "
                f"run `chmod 600 {path}`"
            )
        return decode(text, f"key file {path}")

    def save(self, slot: Slot, key: bytes) -> None:
        path = self._path(slot)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, (encode(key) + "\n").encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
            _fsync_dir(path.parent)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise MasterKeyError(f"cannot write key file {path}: {exc.strerror}") from None

    def delete(self, slot: Slot) -> None:
        path = self._path(slot)
        try:
            path.unlink(missing_ok=True)
            _fsync_dir(path.parent)
        except OSError as exc:
            raise MasterKeyError(f"cannot remove key file {path}: {exc.strerror}") from None


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class EnvironmentKey:
    """The key given in `NEBULA_MASTER_KEY`; a rotation cannot write it back."""

    value: str

    @property
    def where(self) -> str:
        return f"the {ENV_KEY} environment variable"

    def load(self, slot: Slot) -> bytes | None:
        return decode(self.value, self.where) if slot == "current" else None

    def refusal(self) -> MasterKeyError:
        return MasterKeyError(
            f"the master key comes from {self.where}, which Nebula cannot change; "
            f"unset it and use a key file ({ENV_KEY_FILE}) or the OS keyring to create or rotate keys"
        )

    def save(self, slot: Slot, key: bytes) -> None:
        raise self.refusal()

    def delete(self, slot: Slot) -> None:
        raise self.refusal()


@dataclass(frozen=True)
class Keyring:
    """The OS keyring (Secret Service, macOS Keychain, Windows Credential Locker)."""

    backend: str

    @property
    def where(self) -> str:
        return f"the OS keyring ({self.backend}, service {KEYRING_SERVICE!r})"

    @staticmethod
    def _user(slot: Slot) -> str:
        return "master-key" if slot == "current" else "master-key.next"

    def load(self, slot: Slot) -> bytes | None:
        import keyring
        from keyring.errors import KeyringError

        try:
            text = keyring.get_password(KEYRING_SERVICE, self._user(slot))
        except KeyringError as exc:
            raise MasterKeyError(f"cannot read {self.where}: {exc}") from None
        return None if text is None else decode(text, self.where)

    def save(self, slot: Slot, key: bytes) -> None:
        import keyring
        from keyring.errors import KeyringError

        try:
            keyring.set_password(KEYRING_SERVICE, self._user(slot), encode(key))
        except KeyringError as exc:
            raise MasterKeyError(f"cannot write {self.where}: {exc}") from None

    def delete(self, slot: Slot) -> None:
        import keyring
        from keyring.errors import KeyringError, PasswordDeleteError

        try:
            keyring.delete_password(KEYRING_SERVICE, self._user(slot))
        except PasswordDeleteError:
            pass
        except KeyringError as exc:
            raise MasterKeyError(f"cannot write {self.where}: {exc}") from None


def default_key_file() -> Path:
    import platformdirs

    return Path(platformdirs.user_config_dir("nebula")) / "master.key"


def usable_keyring() -> Keyring | None:
    """The OS keyring, when a real backend is available (not keyring's fail/null ones)."""
    try:
        import keyring
        from keyring.backends import fail
    except ImportError:
        return None
    backend = keyring.get_keyring()
    if isinstance(backend, fail.Keyring) or getattr(backend, "priority", 0) <= 0:
        return None
    return Keyring(type(backend).__name__)


def locate(environ: Mapping[str, str] | None = None) -> KeyStore:
    """Where the master key is (or, if there is none yet, where a new one goes)."""
    env = os.environ if environ is None else environ
    if env.get(ENV_KEY):
        return EnvironmentKey(env[ENV_KEY])
    if env.get(ENV_KEY_FILE):
        return KeyFile(Path(env[ENV_KEY_FILE]).expanduser())
    ring = usable_keyring()
    if ring is not None and ring.load("current") is not None:
        return ring
    key_file = KeyFile(default_key_file())
    if key_file.path.exists() or ring is None:
        return key_file
    return ring
