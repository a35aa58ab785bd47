"""Projects: push → new version serving for a cached rebuild, beside building and running it by
hand; and requests failed during consecutive deploys under a steady load.

    python3 bench/projects.py [--rounds 5] [--deploys 10] [--json PATH]

On the test suite's private dockerd and Caddy (`tests/servers.py`), the sample project of
`examples/project-hello` (busybox httpd FROM scratch, with a static busybox copied in) lives in a
bare git repo on this machine; Nebula deploys it with the projects kind, in this process, as
nebulad's sync does (`pipeline.run(..., only=["projects"])`: fetch, plan, build, start, health
check, Caddy's route switched, the old container drained).

1. **Push → serving**, --rounds times: a commit changes only `www/index.html` (the busybox layer
   and its RUN come from the build cache) and is pushed; the clock runs from the push until
   HTTPS through Caddy (verified against Caddy's internal root) answers with the new page.
   Beside it, the floors on the same engine, each until the new container answers over HTTP:
   - `docker build` + `docker run` by hand (the docker CLI; this one has no buildx, so it uses
     the classic builder), on a copy of the same files;
   - the same BuildKit build request Nebula makes (`POST /build?version=2`), then create and
     start through the API: what Nebula's own steps cost beyond the engine's.
2. **Deploys under load**: --deploys consecutive pushes, each deployed while two loops request
   the hostname through Caddy without pause: one opening a connection per request (what is
   counted: expected zero failures), one keeping its connection alive without retrying (shown
   beside: Caddy closes idle keep-alive connections whenever its config changes, which
   browsers and curl retry on a new connection).

Target (from the issue): zero failed requests during the deploys.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

import stacks
from nebula.engine import pipeline
from nebula.engine.load import load_desired
from nebula.kinds.base import World
from nebula.providers.docker import DockerProvider
from nebula.providers.docker.build import build_image
from nebula.store import Store

servers = stacks.servers
EXAMPLE = stacks.REPO_ROOT / "examples" / "project-hello"
HOST = "hello.nebula.lan"
FLOOR_LABEL = {stacks.BENCH_LABEL: "projects"}


def git(*args: str, cwd: Path) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True)
    return done.stdout.strip()


@dataclass
class Lab:
    url: str
    caddy: servers.CaddyServer
    root: Path
    work: Path
    context: ssl.SSLContext
    pushes: int = 0

    def push(self, page: str) -> None:
        (self.work / "www" / "index.html").write_text(page)
        git("commit", "-qam", page.strip(), cwd=self.work)
        git("push", "-q", "origin", "main", cwd=self.work)

    def page(self, n: int) -> str:
        return f"version {n}\n"

    def serves(self, page: str, timeout: float = 120.0) -> float:
        """perf_counter time at which Caddy first answered with `page`."""
        deadline = time.monotonic() + timeout
        with httpx.Client(verify=self.context, timeout=2.0) as client:
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    response = client.get(
                        f"https://127.0.0.1:{self.caddy.https_port}/",
                        headers={"Host": HOST},
                        extensions={"sni_hostname": HOST},
                    )
                    if response.text == page:
                        return time.perf_counter()
                time.sleep(0.005)
        raise RuntimeError(f"{page!r} not served within {timeout:g}s")


@contextlib.contextmanager
def lab_session(tmp: Path) -> Iterator[tuple[Lab, World]]:
    with stacks.docker_session() as (url, _image), servers.caddy_server() as caddy:
        bare, work, config = tmp / "hello.git", tmp / "hello", tmp / "config"
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
        shutil.copytree(EXAMPLE, work, ignore=shutil.ignore_patterns("config", "README.md"))
        shutil.copy(shutil.which("busybox") or "/bin/busybox", work / "busybox")
        git("init", "-q", "-b", "main", cwd=work)
        git("config", "user.email", "bench@example.com", cwd=work)
        git("config", "user.name", "Bench", cwd=work)
        git("remote", "add", "origin", str(bare), cwd=work)
        git("add", "-A", cwd=work)
        git("commit", "-qm", "first", cwd=work)
        git("push", "-q", "origin", "main", cwd=work)
        (config / "projects").mkdir(parents=True)
        proxy = {
            "admin": caddy.admin,
            "listen": "127.0.0.1",
            "http_port": caddy.http_port,
            "https_port": caddy.https_port,
        }
        (config / "nebula.yaml").write_text(json.dumps({"docker": {"host": url}, "proxy": proxy}))
        project = {
            "name": "hello",
            "git_url": str(bare),
            "drain": "1s",
            "health": {"path": "/", "interval": "0.05s"},
            "environments": {"production": {"expose": HOST}},
        }
        (config / "projects" / "hello.yaml").write_text(json.dumps(project))
        store = Store(f"sqlite:///{tmp}/nebula.db")
        provider = DockerProvider(url)
        world = World(lambda: store, store_open=True, docker_provider=provider)
        context = ssl.create_default_context(cadata=caddy.internal_root())
        try:
            yield Lab(url, caddy, config, work, context), world
        finally:
            provider.close()
            store.close()


def nebula_round(lab: Lab, world: World, n: int) -> float:
    """Push a new page; seconds until Caddy serves it (the sync runs in a thread, as nebulad's
    would; its drain of the old container is not waited for)."""
    desired = load_desired(lab.root)
    page = lab.page(n)
    started = time.perf_counter()
    lab.push(page)
    outcome: list[pipeline.Outcome] = []
    sync = threading.Thread(
        target=lambda: outcome.append(pipeline.run(desired, world, only=["projects"]))
    )
    sync.start()
    served = lab.serves(page)
    sync.join()
    if outcome[0].errors:
        raise RuntimeError(f"deploy failed: {outcome[0].errors}")
    return served - started


def answers(address: str, page: str, timeout: float = 60.0) -> float:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if client.get(f"http://{address}:8080/").text == page:
                    return time.perf_counter()
            time.sleep(0.005)
    raise RuntimeError(f"{address} did not serve {page!r}")


def floor_cli(lab: Lab, folder: Path, n: int, network: str) -> float:
    """`docker build` + `docker run` by hand, until the new container answers."""
    page = lab.page(n)
    (folder / "www" / "index.html").write_text(page)
    docker = ["docker", "-H", lab.url]
    tag = f"floor/hello:{n}"
    name = f"floor-cli-{n}"
    started = time.perf_counter()
    subprocess.run(
        [*docker, "build", "-q", "-t", tag, str(folder)], check=True, capture_output=True
    )
    label = f"{stacks.BENCH_LABEL}=projects"
    subprocess.run(
        [*docker, "run", "-d", "--init", "--name", name, "--network", network, "-l", label, tag],
        check=True,
        capture_output=True,
    )
    address = subprocess.run(
        [
            *docker,
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            name,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return answers(address, page) - started


def floor_api(lab: Lab, n: int, network: str) -> float:
    """The same BuildKit request Nebula makes (a commit's `git archive` as the context; the
    commit is made, not pushed), then create and start: until the container answers."""
    api = stacks.api_client(lab.url)
    page = f"floor {n}\n"
    (lab.work / "www" / "index.html").write_text(page)
    started = time.perf_counter()
    git("commit", "-qam", page.strip(), cwd=lab.work)
    context = subprocess.run(
        ["git", "-C", str(lab.work), "archive", "--format=tar", "HEAD"],
        check=True,
        capture_output=True,
    ).stdout
    tag = f"floor/hello:api{n}"
    build_image(
        api,
        context,
        tag,
        dockerfile="Dockerfile",
        buildargs={},
        labels=FLOOR_LABEL,
        timeout=600,
        output=lambda _: None,
    )
    created = api.create_container(
        tag,
        name=f"floor-api-{n}",
        labels=FLOOR_LABEL,
        host_config=api.create_host_config(init=True),
        networking_config=api.create_networking_config({network: api.create_endpoint_config()}),
    )
    api.start(created["Id"])
    address = api.inspect_container(created["Id"])["NetworkSettings"]["Networks"][network]
    result = answers(address["IPAddress"], page) - started
    api.close()
    return result


@dataclass
class Loop:
    """Requests the hostname through Caddy without pause, counting what fails."""

    lab: Lab
    keep_alive: bool
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        limits = httpx.Limits(max_keepalive_connections=None if self.keep_alive else 0)
        with httpx.Client(verify=self.lab.context, timeout=10.0, limits=limits) as client:
            while not self.stop.is_set():
                try:
                    response = client.get(
                        f"https://127.0.0.1:{self.lab.caddy.https_port}/",
                        headers={"Host": HOST},
                        extensions={"sni_hostname": HOST},
                    )
                    if response.status_code == 200:
                        self.ok += 1
                    else:
                        self.failures.append(f"HTTP {response.status_code}")
                except httpx.HTTPError as exc:
                    self.failures.append(type(exc).__name__)


def under_load(lab: Lab, world: World, deploys: int, first: int) -> dict[str, Any]:
    loops = [Loop(lab, keep_alive=False), Loop(lab, keep_alive=True)]
    threads = [threading.Thread(target=loop.run, daemon=True) for loop in loops]
    for thread in threads:
        thread.start()
    took = stacks.Series("deploy under load (sync, drain included)")
    try:
        for n in range(first, first + deploys):
            desired = load_desired(lab.root)
            lab.push(lab.page(n))
            started = time.perf_counter()
            outcome = pipeline.run(desired, world, only=["projects"])
            took.add(time.perf_counter() - started)
            if outcome.errors:
                raise RuntimeError(f"deploy {n} failed: {outcome.errors}")
        time.sleep(0.5)
    finally:
        for loop in loops:
            loop.stop.set()
        for thread in threads:
            thread.join(timeout=30)
    fresh, alive = loops
    return {
        "deploys": deploys,
        "deploy_s": took.to_dict(),
        "fresh_connections": {"ok": fresh.ok, "failed": len(fresh.failures)},
        "keep_alive_no_retry": {
            "ok": alive.ok,
            "failed": len(alive.failures),
            "errors": sorted(set(alive.failures)),
        },
    }


def main() -> None:
    parser = stacks.base_parser(__doc__ or "")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--deploys", type=int, default=10)
    args = parser.parse_args()
    with stacks.scratch_dir("nebula-bench-projects-") as tmp, lab_session(tmp) as (lab, world):
        first = load_desired(lab.root)  # the first deploy builds from nothing: not timed
        if pipeline.run(first, world, only=["projects"]).errors:
            raise RuntimeError("the first deploy failed")
        api = stacks.api_client(lab.url)
        network = "floor-net"
        api.create_network(network, driver="bridge", labels=FLOOR_LABEL)
        floor_folder = Path(tempfile.mkdtemp(dir=tmp))
        shutil.copytree(lab.work, floor_folder / "ctx", ignore=shutil.ignore_patterns(".git"))
        nebula = stacks.Series("Nebula: push → HTTPS through Caddy")
        cli = stacks.Series("docker build + docker run (CLI)")
        raw = stacks.Series("BuildKit request + create/start (API)")
        floor_cli(lab, floor_folder / "ctx", 0, network)  # warm the classic builder's cache
        for n in range(1, args.rounds + 1):
            nebula.add(nebula_round(lab, world, n))
            cli.add(floor_cli(lab, floor_folder / "ctx", n, network))
            raw.add(floor_api(lab, n, network))
        stacks.print_table(
            "push → new version serving (cached rebuild: only www/ changed)",
            ["", "median s", "best s", "Nebula − this (median)"],
            [
                (s.name, f"{s.median:.3f}", f"{s.best:.3f}", f"{nebula.median - s.median:+.3f}")
                for s in (nebula, cli, raw)
            ],
        )
        load = under_load(lab, world, args.deploys, args.rounds + 1)
        failed = load["fresh_connections"]["failed"]
        stacks.print_table(
            f"{args.deploys} consecutive deploys under a steady load loop",
            ["loop", "requests ok", "failed"],
            [
                ("a connection per request", load["fresh_connections"]["ok"], failed),
                (
                    "keep-alive, no retry",
                    load["keep_alive_no_retry"]["ok"],
                    load["keep_alive_no_retry"]["failed"],
                ),
            ],
        )
        print(f"zero failed requests: {stacks.verdict(failed == 0)}")
        api.close()
        stacks.sweep(lab.url)
        stacks.emit_json(
            {
                "machine": stacks.machine(),
                "push_to_serving": {
                    "nebula": nebula.to_dict(),
                    "floor_cli": cli.to_dict(),
                    "floor_api": raw.to_dict(),
                    "overhead_vs_cli_s": round(nebula.median - cli.median, 4),
                    "overhead_vs_api_s": round(nebula.median - raw.median, 4),
                },
                "deploys_under_load": load,
                "zero_failed": failed == 0,
            },
            args.json,
        )


if __name__ == "__main__":
    main()
