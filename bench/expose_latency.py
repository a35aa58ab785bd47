"""Adding an exposed hostname to a running homelab: from the push to HTTPS answering.

A running homelab: nebulad (the real console script) follows a bare git repo whose
post-receive hook tells it about pushes (`nebula hooks install`), one app (the busybox httpd
test image) runs, and a real Caddy (admin API on loopback, unprivileged, its own storage) is the
proxy in nebula.yaml. Each round commits one more `expose:` of that app at a `.lan` name (so
Caddy's internal CA issues its certificate) and pushes; the clock runs from the push until an
HTTPS request to the new name, verified against Caddy's internal root, answers with the app's
page. No container changes: the sync is the proxy step alone.

Beside it, the floor: the same route and certificate policy written by hand into Caddy's
config with one `POST /load`, timed the same way (what any tool driving Caddy needs at least).
Target: every round under 5 s.
"""

from __future__ import annotations

import argparse
import copy
import json
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

import stacks
from daemon import Repo, running_daemon, until

TARGET_S = 5.0
BODY = "nebula-test-ok"  # what the test image serves


@dataclass
class Results:
    push: stacks.Series = field(default_factory=lambda: stacks.Series("push → HTTPS (Nebula)"))
    push_call: stacks.Series = field(default_factory=lambda: stacks.Series("git push (hook)"))
    after_push: stacks.Series = field(
        default_factory=lambda: stacks.Series("push returned → HTTPS (nebulad)")
    )
    floor: stacks.Series = field(default_factory=lambda: stacks.Series("POST /load → HTTPS"))


def https_answers(port: int, host: str, context: ssl.SSLContext, timeout: float) -> float:
    """perf_counter time at which https://host/ (served on 127.0.0.1:port) first answered 200
    with the app's page, the chain verified against `context`."""
    deadline = time.monotonic() + timeout
    with httpx.Client(verify=context, timeout=2.0) as client:
        while True:
            try:
                response = client.get(
                    f"https://127.0.0.1:{port}/",
                    headers={"Host": host},
                    extensions={"sni_hostname": host},
                )
                if response.status_code == 200 and BODY in response.text:
                    return time.perf_counter()
            except httpx.TransportError:
                pass  # no route or no certificate yet
            if time.monotonic() > deadline:
                raise RuntimeError(f"https://{host}/ did not answer within {timeout:g} s")
            time.sleep(0.01)


def write_repo(work: Path, caddy: stacks.servers.CaddyServer, image: str, hosts: list[str]) -> None:
    proxy = {
        "admin": caddy.admin,
        "listen": "127.0.0.1",
        "http_port": caddy.http_port,
        "https_port": caddy.https_port,
    }
    (work / "packages").mkdir(parents=True, exist_ok=True)
    (work / "nebula.yaml").write_text(json.dumps({"proxy": proxy}, indent=2) + "\n")
    app: dict[str, Any] = {"compose": {"services": {"web": {"image": image, "init": True}}}}
    if hosts:
        app["expose"] = [{"host": host, "port": 8080} for host in hosts]
    (work / "packages" / "app.yaml").write_text(json.dumps(app, indent=2) + "\n")


def phase_nebula(
    args: argparse.Namespace,
    url: str,
    image: str,
    *,
    caddy: stacks.servers.CaddyServer,
    tmp: Path,
    r: Results,
) -> dict[str, Any]:
    repo = Repo(tmp / "repo", stacks.private_env(tmp / "xdg-git"))
    hosts: list[str] = []
    write_repo(repo.work, caddy, image, hosts)
    repo.git("add", "-A")
    repo.git("commit", "-q", "-m", "the app, not exposed")
    repo.push()
    options = ("--poll-interval", "3600", "--drift-interval", "3600")
    with running_daemon(tmp / "daemon", repo.bare, url, *options) as daemon:
        hook = [stacks.nebula_script(), "hooks", "install", repo.bare]
        stacks.run([*hook, "--socket", daemon.socket], env=daemon.env)
        daemon.start()
        until(lambda: daemon.idle_at(repo.head()), 120, "first sync", daemon)
        context = ssl.create_default_context(cadata=caddy.internal_root())
        for i in range(args.rounds):
            host = f"app{i}.nebula.lan"
            hosts.append(host)
            write_repo(repo.work, caddy, image, hosts)
            repo.git("commit", "-q", "-a", "-m", f"expose {host}")
            sha = repo.head()
            before = time.perf_counter()
            pushed = before + r.push_call.add(repo.push())
            answered = https_answers(caddy.https_port, host, context, args.timeout)
            r.push.add(answered - before)
            r.after_push.add(max(answered - pushed, 0.0))
            until(lambda sha=sha: daemon.idle_at(sha), 30, f"sync of {host}", daemon)
        return httpx.get(f"{caddy.admin}/config/", timeout=10).json()  # type: ignore[no-any-return]


def phase_floor(
    args: argparse.Namespace, caddy: stacks.servers.CaddyServer, base: dict[str, Any], r: Results
) -> None:
    """The same change made by hand: one more route and policy subject, one POST /load."""
    context = ssl.create_default_context(cadata=caddy.internal_root())
    config = copy.deepcopy(base)
    server = config["apps"]["http"]["servers"]["nebula"]
    dial = server["routes"][0]["handle"][0]["upstreams"][0]["dial"]
    policy = {"subjects": [], "issuers": [{"module": "internal"}]}
    config["apps"]["tls"]["automation"]["policies"].append(policy)
    with httpx.Client(base_url=caddy.admin, timeout=30) as admin:
        for i in range(args.rounds):
            host = f"floor{i}.nebula.lan"
            server["routes"].append(
                {
                    "match": [{"host": [host]}],
                    "handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": dial}]}],
                    "terminal": True,
                }
            )
            policy["subjects"].append(host)
            before = time.perf_counter()
            admin.post("/load", json=config).raise_for_status()
            answered = https_answers(caddy.https_port, host, context, args.timeout)
            r.floor.add(answered - before)


def report(args: argparse.Namespace, r: Results, load_before: dict[str, Any]) -> None:
    rows = []
    for series in (r.push, r.push_call, r.after_push, r.floor):
        rows.append(
            [series.name, series.median, series.percentile(95), max(series.values), series.best]
        )
    stacks.print_table(
        f"Adding an exposed hostname (internal CA), {args.rounds} rounds; seconds",
        ["", "median", "p95", "worst", "best"],
        rows,
    )
    worst = max(r.push.values)
    ok = worst < TARGET_S
    stacks.print_table(
        "Verdict",
        ["figure", "value", "target", "nebulad's part / floor (medians)", ""],
        [
            [
                "push → HTTPS, worst",
                worst,
                f"< {TARGET_S:g}",
                stacks.ratio(r.after_push.median, r.floor.median),
                stacks.verdict(ok),
            ]
        ],
    )
    result = {
        "benchmark": "expose_latency",
        "machine": load_before,
        "rounds": args.rounds,
        "nebula_push_to_https": r.push.to_dict(),
        "git_push": r.push_call.to_dict(),
        "push_returned_to_https": r.after_push.to_dict(),
        "floor_load_to_https": r.floor.to_dict(),
        "ratio_nebulad_to_floor": round(stacks.ratio(r.after_push.median, r.floor.median), 2),
        "target_s": TARGET_S,
        "pass": ok,
    }
    stacks.emit_json(result, args.json)


def main() -> None:
    parser = stacks.base_parser((__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds each round may take")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    load_before = stacks.machine()
    r = Results()
    with (
        stacks.docker_session() as (url, image),
        stacks.servers.caddy_server() as caddy,
        stacks.scratch_dir("nebula-bench-") as tmp,
    ):
        try:
            base = phase_nebula(args, url, image, caddy=caddy, tmp=tmp, r=r)
            phase_floor(args, caddy, base, r)
        finally:
            stacks.sweep(url)
    report(args, r, load_before)


if __name__ == "__main__":
    main()
