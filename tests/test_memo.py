"""A remembered no-op plan is replayed only for the very same inputs and observed state."""

from __future__ import annotations

from pathlib import Path

from nebula.engine.memo import NoopMemo, input_key, observed_digest
from nebula.kinds.packages.types import Observed, ObservedContainer, ObservedNetwork

PLAN = {"summary": {"create": 0, "update": 0, "delete": 0, "noop": 2}, "changes": []}


def observed(state: str = "running") -> Observed:
    container = ObservedContainer("id1", "a-web", "a", "web", "h1", {"image": "x"}, state)
    return Observed((container,), (ObservedNetwork("n1", "a_default", "a"),), ())


def repo(tmp_path: Path) -> Path:
    (tmp_path / "packages").mkdir(parents=True, exist_ok=True)
    (tmp_path / "nebula.yaml").write_text("")
    (tmp_path / "packages" / "a.yaml").write_text("compose: {services: {web: {image: x}}}\n")
    return tmp_path


def test_any_change_of_a_file_or_of_the_world_is_a_miss(tmp_path: Path) -> None:
    root = repo(tmp_path / "repo")
    catalog = tmp_path / "catalog"
    (catalog / "redis").mkdir(parents=True)
    (catalog / "redis" / "1.yaml").write_text("name: redis\n")
    memo = NoopMemo(tmp_path / "cache" / "noop-plans.json")
    key = input_key(root, [catalog])
    memo.remember(key, observed(), PLAN, "unix:///run/docker.sock")

    entry = memo.entry(key)
    assert entry is not None and entry["plan"] == PLAN
    assert entry["docker_host"] == "unix:///run/docker.sock"
    assert entry["observed"] == observed_digest(observed())
    assert entry["observed"] != observed_digest(observed(state="exited"))

    (root / "packages" / "a.yaml").write_text("compose: {services: {web: {image: y}}}\n")
    assert input_key(root, [catalog]) != key
    (root / "packages" / "a.yaml").write_text("compose: {services: {web: {image: x}}}\n")
    assert input_key(root, [catalog]) == key
    (root / "packages" / "b.yml").write_text("package: redis\n")
    assert input_key(root, [catalog]) != key
    (root / "packages" / "b.yml").unlink()
    (catalog / "redis" / "1.yaml").write_text("name: redis\nversion: '1'\n")
    assert input_key(root, [catalog]) != key
    (catalog / "redis" / "1.yaml").unlink()
    (root / "domains").mkdir()
    (root / "domains" / "example.yaml").write_text("zone: example.com\n")
    assert input_key(root, [catalog]) != key


def test_memo_keeps_a_few_repos_and_survives_a_corrupt_file(tmp_path: Path) -> None:
    memo = NoopMemo(tmp_path / "noop-plans.json")
    for i in range(12):
        memo.remember(f"key{i}", observed(), PLAN, None)
    assert memo.entry("key0") is None
    assert memo.entry("key11") is not None
    memo.path.write_text("{not json")
    assert memo.entry("key11") is None
    memo.remember("key12", observed(), PLAN, None)
    assert memo.entry("key12") is not None
