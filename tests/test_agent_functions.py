"""The functions agents call, run for real: `http` ones against an HTTP server on loopback,
`docker` ones as one-shot containers on the private Docker Engine, and the built-ins over a
real store (and a real installation where they reach Docker). Whatever they answer is masked."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import docker
import pytest
from typer.testing import CliRunner

import servers
from nebula.ai.builtins import LIST_LIMIT, Builtins
from nebula.ai.functions import RESULT_LIMIT, FunctionContext, FunctionError, invoke_function
from nebula.cli.app import app
from nebula.errors import NebulaError
from nebula.kinds.functions.types import BUILTINS, DockerCall, FunctionDef, HttpCall
from nebula.providers.docker import LABEL_FUNCTION, DockerProvider
from nebula.remediation.alerts import Alert
from nebula.remediation.incidents import Incidents
from nebula.store import Store
from nebula.store.mask import secret_replacer

TOKEN = "hook-token-5b1e9c"  # the vault's `hook_token`
PLANTED = "db-password-77ad2f"  # a secret the vault holds, planted where a tool reads
SECRETS = {"hook_token": TOKEN, "db_password": PLANTED}
ANY = {"type": "object"}


def secret(name: str) -> str:
    if name not in SECRETS:
        raise NebulaError(f"no secret {name!r} in the vault")
    return SECRETS[name]


# the masking nebulad gives: every vault value replaced by its stand-in
MASK = secret_replacer({value: f"••••{name}" for name, value in SECRETS.items()})


def context(
    builtins: Any = None, docker_provider: Callable[[], DockerProvider] | None = None
) -> FunctionContext:
    def no_docker() -> DockerProvider:
        raise AssertionError("this function must not reach Docker")

    return FunctionContext(builtins or {}, secret, docker_provider or no_docker, MASK)


def http_fn(url: str, method: str = "POST", **headers: str) -> FunctionDef:
    return FunctionDef(
        "hook", "a web hook", ANY, url, "http", timeout=10, http=HttpCall(method, headers)
    )


# -- http --------------------------------------------------------------------------------------


class Hook(BaseHTTPRequestHandler):
    """Answers by path: /echo what it received, /fail a 500 telling the token it was given,
    /moved a redirect to /echo, /huge a body of 1 MiB."""

    received: list[dict[str, Any]] = []

    def _answer(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        seen = {
            "method": self.command,
            "query": parse_qs(url.query),
            "body": json.loads(body) if body else None,
            "authorization": self.headers.get("authorization"),
        }
        Hook.received.append(seen)
        if url.path == "/echo":
            self._send(200, json.dumps(seen).encode())
        elif url.path == "/fail":
            self._send(500, f"denied for {seen['authorization']}".encode())
        elif url.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "/echo")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif url.path == "/huge":
            self._send(200, b"x" * (1024 * 1024))
        else:
            self._send(404, b"no such path")

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def hook() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    Hook.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_get_sends_the_arguments_as_the_query(hook: str) -> None:
    fn = http_fn(f"{hook}/echo", "GET")
    answer = json.loads(invoke_function(fn, {"q": "disk", "n": 3, "tags": ["a", "b"]}, context()))
    assert answer["method"] == "GET"
    assert answer["query"] == {"q": ["disk"], "n": ["3"], "tags": ["a", "b"]}
    assert answer["body"] is None


def test_a_post_sends_them_as_a_json_body_with_the_secret_header_resolved(hook: str) -> None:
    fn = http_fn(f"{hook}/echo", Authorization="Bearer ${secret:hook_token}")
    result = invoke_function(fn, {"installation": "blog", "lines": 5}, context())

    assert Hook.received[-1]["authorization"] == f"Bearer {TOKEN}"  # the server got the value
    assert Hook.received[-1]["body"] == {"installation": "blog", "lines": 5}
    assert TOKEN not in result  # the server echoed it; the model does not see it
    assert json.loads(result)["authorization"] == "Bearer ••••hook_token"


def test_a_secret_header_is_masked_even_when_the_callers_masking_misses_it(hook: str) -> None:
    fn = http_fn(f"{hook}/echo", Authorization="Bearer ${secret:hook_token}")
    ctx = FunctionContext({}, secret, DockerProvider, str)  # masks nothing itself
    result = invoke_function(fn, {}, ctx)
    assert TOKEN not in result
    assert json.loads(result)["authorization"].startswith("Bearer ••••")


def test_a_failed_call_is_an_error_with_the_status_and_no_secret(hook: str) -> None:
    fn = http_fn(f"{hook}/fail", Authorization="Bearer ${secret:hook_token}")
    with pytest.raises(FunctionError) as failed:
        invoke_function(fn, {}, context())
    message = str(failed.value)
    assert "500" in message and "denied for Bearer" in message
    assert TOKEN not in message


def test_a_redirect_is_not_followed(hook: str) -> None:
    with pytest.raises(FunctionError, match=r"302.*redirects are not followed"):
        invoke_function(http_fn(f"{hook}/moved", "GET"), {}, context())
    assert [r["method"] for r in Hook.received] == ["GET"]  # /echo was never asked


def test_a_huge_answer_is_cut(hook: str) -> None:
    result = invoke_function(http_fn(f"{hook}/huge", "GET"), {}, context())
    assert result.startswith("xxxx")
    assert result.endswith(f"[cut at {RESULT_LIMIT} bytes]")
    assert len(result.encode()) < RESULT_LIMIT + 100


def test_an_unreachable_url_and_a_missing_secret_are_errors(hook: str) -> None:
    port = servers.free_port()
    with pytest.raises(FunctionError, match=f"127.0.0.1:{port}"):
        invoke_function(http_fn(f"http://127.0.0.1:{port}/"), {}, context())
    fn = http_fn(f"{hook}/echo", Authorization="Bearer ${secret:nope}")
    with pytest.raises(FunctionError, match="no secret 'nope'"):
        invoke_function(fn, {}, context())
    assert Hook.received == []  # nothing was sent without its secret


# -- docker ------------------------------------------------------------------------------------


def docker_fn(
    image: str, *command: str, timeout: float = 20, network: str | None = None
) -> FunctionDef:
    call = DockerCall(command=command, network=network, memory="64m", cpus=0.5)
    return FunctionDef("probe", "a probe", ANY, image, "docker", timeout=timeout, docker=call)


@pytest.fixture
def engine(docker_host: str) -> Iterator[DockerProvider]:
    provider = DockerProvider(docker_host)
    try:
        yield provider
    finally:
        provider.close()


def test_a_container_reads_its_arguments_on_stdin(engine: DockerProvider, test_image: str) -> None:
    fn = docker_fn(test_image, "sh", "-c", "cat; echo; echo done >&2")
    result = invoke_function(
        fn, {"installation": "blog", "lines": 3}, context(None, lambda: engine)
    )
    first, second = result.splitlines()
    assert json.loads(first) == {"installation": "blog", "lines": 3}
    assert second == "done"


def test_a_container_has_no_network_unless_one_is_declared(
    engine: DockerProvider, test_image: str, docker_host: str
) -> None:
    interfaces = ("sh", "-c", "ls /sys/class/net")
    alone = invoke_function(docker_fn(test_image, *interfaces), {}, context(None, lambda: engine))
    assert alone.split() == ["lo"]
    client = docker.APIClient(base_url=docker_host, version=servers.DOCKER_API_VERSION)
    network = client.create_network("tools", labels=servers.labels())
    try:
        declared = docker_fn(test_image, *interfaces, network="tools")
        assert invoke_function(declared, {}, context(None, lambda: engine)).split() == [
            "eth0",
            "lo",
        ]
    finally:
        client.remove_network(network["Id"])
        client.close()


def test_a_container_is_confined_then_killed_at_its_timeout_and_removed(
    engine: DockerProvider, test_image: str, docker_host: str
) -> None:
    fn = docker_fn(test_image, "sleep", "60", timeout=3)
    failed: list[BaseException] = []

    def call() -> None:
        try:
            invoke_function(fn, {}, context(None, lambda: engine))
        except FunctionError as exc:
            failed.append(exc)

    runner = threading.Thread(target=call)
    runner.start()
    client = docker.APIClient(base_url=docker_host, version=servers.DOCKER_API_VERSION)
    try:
        mine = {"label": f"{LABEL_FUNCTION}=probe"}
        while not (running := client.containers(filters=mine)):
            assert runner.is_alive(), failed
            time.sleep(0.1)
        seen = client.inspect_container(running[0]["Id"])
        runner.join()
        left = client.containers(all=True, filters=mine)
    finally:
        client.close()
    host = seen["HostConfig"]
    assert host["Memory"] == 64 * 1024 * 1024 and host["NanoCpus"] == 500_000_000
    assert host["NetworkMode"] == "none" and host["ReadonlyRootfs"] is True
    assert "no-new-privileges" in host["SecurityOpt"] and host["PidsLimit"] > 0
    assert "io.nebula.managed" not in seen["Config"]["Labels"]  # no sync takes it for an app
    assert len(failed) == 1 and "no result within 3s; its container was killed" in str(failed[0])
    assert left == []


def test_a_nonzero_exit_is_an_error_with_the_output_masked(
    engine: DockerProvider, test_image: str
) -> None:
    fn = docker_fn(
        test_image, "sh", "-c", f"echo connecting with {PLANTED}; echo refused >&2; exit 4"
    )
    with pytest.raises(FunctionError) as failed:
        invoke_function(fn, {}, context(None, lambda: engine))
    message = str(failed.value)
    assert "exited with code 4" in message and "refused" in message
    assert PLANTED not in message and "••••db_password" in message


# -- built-ins ---------------------------------------------------------------------------------


def builtin(name: str) -> FunctionDef:
    return FunctionDef(name, BUILTINS[name].description, BUILTINS[name].parameters, name, "code")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(f"sqlite:///{tmp_path}/nebula.db") as opened:
        yield opened


def test_incidents_come_from_the_store_open_ones_unless_asked(store: Store) -> None:
    incidents = Incidents(store)
    web = incidents.receive(Alert("unhealthy", {"service": "web", "installation": "blog"}))
    gone = incidents.receive(Alert("unhealthy", {"service": "db", "installation": "wiki"}))
    assert web.incident and gone.incident
    incidents.resolve(gone.incident.id, "alice", "fixed")
    ctx = context(Builtins(store, DockerProvider))

    open_ones = json.loads(invoke_function(builtin("incidents"), {}, ctx))
    assert [i["id"] for i in open_ones["incidents"]] == [web.incident.id]
    assert open_ones["incidents"][0]["service"] == "web"
    resolved = json.loads(invoke_function(builtin("incidents"), {"status": "resolved"}, ctx))
    assert [i["id"] for i in resolved["incidents"]] == [gone.incident.id]


def test_the_catalog_search_answers_a_capped_list(store: Store) -> None:
    ctx = context(Builtins(store, DockerProvider))
    found = json.loads(invoke_function(builtin("catalog_search"), {"query": "grafana"}, ctx))
    assert found["packages"][0]["name"] == "grafana"
    everything = json.loads(invoke_function(builtin("catalog_search"), {"query": ""}, ctx))
    assert len(everything["packages"]) == LIST_LIMIT < everything["total"]


def test_nebulads_builtins_fail_clearly_without_it_and_run_with_it(store: Store) -> None:
    with pytest.raises(FunctionError, match="'plan' is nebulad's"):
        invoke_function(builtin("plan"), {}, context(Builtins(store, DockerProvider)))
    given = Builtins(store, DockerProvider, daemon={"plan": lambda args: {"changes": 2}})
    assert json.loads(invoke_function(builtin("plan"), {}, context(given))) == {"changes": 2}
    with pytest.raises(ValueError, match="not nebulad's built-ins: logs"):
        Builtins(store, DockerProvider, daemon={"logs": lambda args: None})


def test_a_secret_in_a_builtins_answer_comes_back_masked(store: Store) -> None:
    leaky = {"status": lambda args: {"note": f"DATABASE_URL=postgres://app:{PLANTED}@db/app"}}
    result = invoke_function(
        builtin("status"), {}, context(Builtins(store, DockerProvider, daemon=leaky))
    )
    assert PLANTED not in result and "••••db_password" in result


PACKAGE = """compose:
  services:
    web:
      image: {image}
      command: [sh, -c, "echo serving with {secret}; echo ready; sleep 3600"]
"""


def test_installations_logs_and_restart_on_a_real_installation(
    tmp_path: Path, docker_host: str, test_image: str, engine: DockerProvider
) -> None:
    repo = tmp_path / "repo"
    (repo / "packages").mkdir(parents=True)
    (repo / "nebula.yaml").write_text("")
    (repo / "packages" / "blog.yaml").write_text(PACKAGE.format(image=test_image, secret=PLANTED))
    database = f"sqlite:///{tmp_path}/applied.db"
    applied = CliRunner().invoke(
        app, ["apply", str(repo), "--docker-host", docker_host, "--database-url", database]
    )
    assert applied.exit_code == 0, applied.stdout + applied.stderr
    with Store(database) as store:
        ctx = context(Builtins(store, lambda: engine), lambda: engine)

        listed = json.loads(invoke_function(builtin("installations"), {}, ctx))
        (blog,) = listed["installations"]
        assert blog["name"] == "blog" and blog["status"] == "running"
        assert [(c["name"], c["state"]) for c in blog["containers"]] == [("blog-web", "running")]
        with pytest.raises(FunctionError, match="no installation 'blgo'; did you mean 'blog'"):
            invoke_function(builtin("installations"), {"installation": "blgo"}, ctx)

        for _ in range(100):  # the container writes its lines once it runs
            logged = json.loads(invoke_function(builtin("logs"), {"installation": "blog"}, ctx))
            if "web: ready" in logged["lines"]:
                break
            time.sleep(0.1)
        assert logged["lines"] == ["web: serving with ••••db_password", "web: ready"]

        started = engine.inspect("blog-web")["State"]["StartedAt"]
        restarted = invoke_function(builtin("restart"), {"installation": "blog"}, ctx)
        assert json.loads(restarted) == {"restarted": ["blog-web"]}
        assert engine.inspect("blog-web")["State"]["StartedAt"] != started
        with pytest.raises(FunctionError, match="no service 'db' in installation blog"):
            invoke_function(builtin("restart"), {"installation": "blog", "service": "db"}, ctx)
