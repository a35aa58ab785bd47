"""Desired DNS zones remembered by the digest of the config repo's files.

The desired record sets are a pure function of the repo's files (and Nebula's version): when
the files are byte for byte those of an earlier load, `nebula dns plan|apply` take the zones
from here instead of parsing and validating the YAML again, which is most of a no-op sync's
time. Any change to any file of the repo is a miss. Only the desired data is kept (names,
values, the secret's name; never a token), in the user's cache dir.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from nebula.engine.memo import input_key
from nebula.kinds.dns.types import DesiredZone

_KEEP = 4  # config repos remembered


class ZonesMemo:
    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def default(cls) -> ZonesMemo:
        """`dns-zones.json` in the user's cache dir (on Linux the XDG rule, applied directly:
        importing platformdirs is a noticeable part of a no-op sync)."""
        if sys.platform.startswith("linux"):
            base = os.environ.get("XDG_CACHE_HOME", "").strip() or os.path.expanduser("~/.cache")
            return cls(Path(base) / "nebula" / "dns-zones.json")
        import platformdirs

        return cls(Path(platformdirs.user_cache_dir("nebula")) / "dns-zones.json")

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_bytes())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def zones(self, key: str) -> list[DesiredZone] | None:
        """The zones loaded last time from files of digest `key` (see `engine.memo.input_key`)."""
        entry = self._read().get(key)
        if not isinstance(entry, list):
            return None
        try:
            return [DesiredZone.from_json(z) for z in entry]
        except (KeyError, TypeError, ValueError):
            return None

    def remember(self, key: str, zones: list[DesiredZone]) -> None:
        """Keep the zones of these files; failing to write is harmless and ignored."""
        entries = self._read()
        entries.pop(key, None)
        entries[key] = [z.to_json() for z in zones]
        kept = dict(list(entries.items())[-_KEEP:])
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(kept, separators=(",", ":")))
            tmp.replace(self.path)
        except OSError:
            pass


def load_zones(root: Path) -> list[DesiredZone]:
    """The repo's desired zones: remembered when its files are unchanged, else loaded and
    validated (`ConfigError` lists every problem) and remembered."""
    memo = ZonesMemo.default()
    key = input_key(root, [])
    zones = memo.zones(key)
    if zones is None:
        from nebula.kinds.dns.desired import desired_zones
        from nebula.spec.repo import load_repo

        zones = desired_zones(load_repo(root))
    memo.remember(key, zones)
    return zones
