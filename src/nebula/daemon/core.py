"""The daemon's loop: each new commit is loaded, validated, planned and applied; drift is undone.

One worker thread runs syncs one at a time, so one apply runs per installation at a time.
Requests for a sync (a push, a poll, a webhook, a Docker event) only set a flag: those arriving
during a sync coalesce into one next sync. A commit that does not load or validate is recorded
as a failed sync and changes nothing: the last good desired state stays in force, and drift is
corrected against it. A commit that would remove too many installations is held until approved.

No exception ends a thread of the daemon (see `daemon.faults`). A sync that breaks (Docker gone,
the store refusing writes on a full disk) is reported, answered on the event stream even when it
cannot be recorded, and tried again after a pause that grows to the drift interval, so the
daemon recovers by itself once the cause goes.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nebula.ai.builtins import Builtins
from nebula.ai.service import AI
from nebula.daemon.catalog_api import Marketplace
from nebula.daemon.cluster import Membership, listing, node_issues
from nebula.daemon.config import DaemonConfig
from nebula.daemon.containers import ContainerKeeper
from nebula.daemon.control import ControlError, DaemonStatus, Event, SyncRecord, SyncTrigger
from nebula.daemon.dns import DnsKeeper
from nebula.daemon.events import EventBus
from nebula.daemon.faults import Faults
from nebula.daemon.gitsync import Commit, GitSource
from nebula.daemon.health import HealthMonitor
from nebula.daemon.projects import ProjectDesk
from nebula.daemon.proxy import ProxyKeeper
from nebula.daemon.synclog import SyncLog
from nebula.daemon.webhook import verify_and_parse
from nebula.engine import logs, pipeline, queries
from nebula.engine.load import load_desired
from nebula.engine.projects import ProjectService
from nebula.errors import ConfigError, NebulaError
from nebula.kinds.base import Desired, World
from nebula.kinds.packages.types import ObservedContainer
from nebula.plan import Plan
from nebula.providers.docker import ContainerEvent, DockerProvider
from nebula.remediation.service import Remediation
from nebula.remediation.workflows import WorkflowError
from nebula.secrets import open_vault
from nebula.secrets.resolve import vault_secrets
from nebula.spec.config import Node
from nebula.store import Store, SyncStatus
from nebula.store import audit as audit_log
from nebula.store import cluster as nodes_db
from nebula.store.applylock import WaitStoppedError
from nebula.store.audit import AuditRecord
from nebula.store.cluster import setting_key
from nebula.store.records import ExecutionInfo, IncidentInfo, RunbookRecord, SilenceInfo

log = logging.getLogger("nebulad")

_DRIFT_ACTIONS = {"destroy", "die", "stop", "kill", "reconnect"}
_FETCHING = {"start", "poll", "webhook", "hook", "watch", "manual", "rollback", "leader"}
# asked for by someone, or a new leader's first sync (a takeover to see): always recorded
_EXPLICIT = {"manual", "hook", "webhook", "leader"}
# what every node applies for itself (a project's environments deploy on their own node); the
# other kinds are cluster-wide: the leader's alone
NODE_KINDS = frozenset({"packages", "swarm", "projects"})
RETRY_FIRST = 2.0  # seconds until a sync that broke is tried again; doubled up to drift_interval


@dataclass(frozen=True)
class _Share:
    """One node's part of a sync: the node (None: this nebulad's only one), its engine, the
    record of its syncs, and whether the cluster-wide kinds come with it (the leader's own)."""

    node: str | None
    provider: DockerProvider
    log: SyncLog
    cluster: bool


@dataclass
class _Good:
    """The last commit that loaded and validated, and its desired state."""

    commit: Commit | None
    desired: Desired


class Daemon:
    def __init__(
        self, config: DaemonConfig, store: Store, provider: DockerProvider, source: GitSource | None
    ) -> None:
        self.config = config
        self.node = config.node  # None: the homelab's only nebulad, named by no --node
        self.store = store
        self.provider = provider
        self.source = source  # None when following a local working folder (watch mode)
        self.bus = EventBus()
        self.faults = Faults()
        self.health = HealthMonitor(
            store, provider, self.bus, self.faults
        )  # checks of the last good state
        self.log = SyncLog(store, self.bus, config.node)  # finished syncs; API requests: daemon.api
        self.audit = self.log.audit
        self._wake = threading.Condition()
        self._pending: set[str] = set()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._good: _Good | None = None
        self._bad_commit: str | None = None  # the newest commit known not to load
        self._vault_seen: dict[str, str] | None = None  # secret fingerprints at the last load
        self._reported = False  # whether the sync in progress already recorded a failure
        self._held: tuple[str, int] | None = None  # commit, sync id waiting for approval
        self._driven: dict[str, tuple[DockerProvider, SyncLog]] = {}  # the leader's other nodes
        self._approved: str | None = None
        self.proxy = ProxyKeeper(store, self.bus)
        self.dns = DnsKeeper(self.bus)
        self.containers = ContainerKeeper()
        folder = Path(config.source) if source is None else source.clone_dir / config.subfolder
        self.marketplace = Marketplace(store, source, folder, lambda: self.request_sync("manual"))
        self.project_desk = ProjectDesk(
            self.marketplace,
            source,
            folder,
            config.data_dir,
            self._desired,
            service=lambda: self.projects,
            dashboard=config.dashboard,
        )
        self.remediation = Remediation(
            store,
            provider,
            self.bus.publish,
            node=config.node or socket.gethostname(),
            recreate=self._recreate,
            busy=self._busy,
        )
        self._configured: _Good | None = None  # the state remediation was last configured with
        self.ai = AI(
            store,
            self.bus.publish,
            Builtins(
                store,
                lambda: provider,
                catalog_dirs=self.marketplace.catalog_dirs,
                daemon={
                    "status": lambda _: dataclasses.asdict(self.status()),
                    "plan": lambda _: self.plan(),
                    "apply": lambda _: self._apply_now(),
                    "install": self._install_for_agent,
                },
            ),
            lambda: provider,
        )
        self._ai_configured: _Good | None = None  # the state the AI runtime was configured with
        self.remediation.engine.services.agent = lambda agent, task, incident: self.ai.run(
            agent, task, "runbook", incident
        )
        self.membership = Membership(
            store,
            self._identity,
            lambda: good.desired.repo.config.nodes if (good := self._good) else [],
            changed=self._lead,
            alert=self.remediation.receive,
            faults=self.faults,
        )
        if self.node is not None:
            self.remediation.workflows.lead(False)  # one of several: until elected (`_lead`)
        # deployments of the last good commit's projects, asked for through the API
        self.projects = ProjectService(self._desired, self._project_world)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        interrupted = self.store.interrupt_running_syncs(
            "interrupted: nebulad stopped during this sync; the next sync carries on", self.node
        )
        if interrupted:
            log.warning("%d sync(s) were cut short by the last stop; continuing", interrupted)
        unfinished = self.projects.interrupted()
        if unfinished:
            log.warning("%d project deployment(s) were cut short by the last stop", unfinished)
        cut = self.ai.resume_interrupted()
        if cut:
            log.warning("%d agent execution(s) were cut short by the last stop", len(cut))
        self._spawn(self._work, "sync")
        self._spawn(self._tick, "timer")
        self.health.start()
        self._spawn(
            lambda: self.provider.follow(
                self._on_docker_event,
                self._stop,
                lambda exc: self.faults.report("docker-events", exc),
            ),
            "docker-events",
        )
        self._spawn(lambda: self.membership.heartbeats(self._stop), "heartbeat")
        if self.node is not None:
            self._spawn(lambda: self.membership.elect(self._stop), "leader")
        # certificates are the routes', so the leader's to watch
        self._spawn(
            lambda: self.proxy.watch(self._stop, lambda: self._desired() if self.leading else None),
            "certificates",
        )
        self._spawn(self._remediate, "remediation")
        if self.config.watch:
            self._spawn(self._watch_folder, "watch")
        self.request_sync("start")

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(
            target=self.faults.keep_running, args=(name, target, self._stop), name=name, daemon=True
        )
        thread.start()
        self._threads.append(thread)

    def stop(self, timeout: float = 600.0) -> None:
        """Finish the sync in flight (one still waiting for the apply lock gives up), then stop."""
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        self._threads[0].join(timeout)
        for thread in self._threads:
            if thread.name == "leader":
                thread.join(5.0)  # it resigns on its way out: another node leads at once
        self.health.stop()
        for provider, _ in self._driven.values():
            provider.close()
        self.remediation.close()
        # Agents' runs need no stopping: one cut short ends `interrupted` at the next start
        # (`AI.resume_interrupted`).
        self.bus.close()

    # -- requests --------------------------------------------------------------------------

    def request_sync(self, trigger: SyncTrigger) -> None:
        with self._wake:
            self._pending.add(trigger)
            self._wake.notify_all()

    def _tick(self) -> None:
        last_poll = time.monotonic()
        while not self._stop.wait(self.config.drift_interval):
            if time.monotonic() - last_poll >= self.config.poll_interval and not self.config.watch:
                last_poll = time.monotonic()
                self.request_sync("poll")
            else:
                self.request_sync("drift")

    def _on_docker_event(self, event: ContainerEvent) -> None:
        """Drift: a managed container went away or stopped. A container the daemon removed
        itself (replaced, or failed to start) is not drift: reacting to it would retry a failing
        change in a tight loop; the interval re-check retries it instead."""
        if event.action == "reconnect":
            self.faults.clear("docker-events")  # the stream is back
        own = self.provider.removed_by_us(event.container_id) or self.provider.restarting(event)
        self.containers.seen(event, own=own or self.provider.made_by_us(event))
        if own:
            return  # its own change (a replacement, a runbook's restart), not drift
        if self.provider.held(event):
            return  # stopped or paused for a backup, and started again by it
        if event.action in _DRIFT_ACTIONS:
            self.request_sync("drift")
        self.remediation.on_container_event(event)

    def _remediate(self) -> None:
        """Runbooks cut short by the last stop go on; then the daemon's events that are
        alerts (health, syncs, certificates) go to remediation as they come."""
        events = self.bus.subscribe()
        resumed = self.remediation.resume_interrupted()
        if resumed:
            log.warning("%d runbook run(s) were cut short by the last stop; resuming", len(resumed))
        for event in events:
            if self._stop.is_set():
                return
            self.remediation.observe(event.kind, event.data)

    def _configure_remediation(self, good: _Good) -> None:
        if self._configured is good:
            return
        try:
            self.remediation.configure(good.desired, vault_secrets(self.store))
            self._configured = good
            self.faults.clear("remediation")
        except NebulaError as exc:  # e.g. a channel's secret missing: runbooks still run
            self.faults.report("remediation", exc)

    def _configure_ai(self, good: _Good) -> None:
        if self._ai_configured is good:
            return
        try:
            self.ai.configure(good.desired, vault_secrets(self.store))
            self._ai_configured = good
            self.faults.clear("ai")
        except NebulaError as exc:
            self.faults.report("ai", exc)

    def plan(self) -> dict[str, Any]:
        good = self._good
        if good is None:
            return {"changes": [], "note": "no good commit loaded yet"}
        world = World(
            lambda: self.store,
            vault_secrets(self.store),
            node=self.node,
            store_open=True,
            docker_provider=self.provider,
            dashboard=self.config.dashboard,
        )
        plan = pipeline.plan(good.desired, world)
        return {"changes": plan.change_records(), "problems": plan.problems}

    def _apply_now(self) -> dict[str, Any]:
        """The `apply` built-in: a sync soon, as `nebula sync` asks."""
        self.request_sync("manual")
        return {"queued": True}

    def _install_for_agent(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """The `install` built-in: the marketplace's install, committed as an agent's."""
        request = {
            "package": arguments["package"],
            "name": arguments.get("name"),
            "values": arguments.get("variables") or {},
        }
        return self.marketplace.install(request, "agent")

    def _busy(self, container: str) -> bool:
        """Whether the sync is changing the installation `container` belongs to right now."""
        good = self._good
        if good is None:
            return False
        owner = next(
            (
                i.name
                for i in good.desired.installations
                for c in i.containers
                if c.name == container
            ),
            None,
        )
        return owner is not None and any(
            i.name == owner and i.status == "installing" for i in self.store.installations()
        )

    def _recreate(self, container: str) -> None:
        """A runbook's `recreate`: the container goes, and a sync makes it again from the spec."""
        info = self.provider.inspect(container)
        self.provider.remove_container(info["Id"], container, stop_timeout=10.0)
        self.request_sync("drift")

    def _watch_folder(self) -> None:
        from watchfiles import watch

        for _ in watch(self.config.source, stop_event=self._stop, debounce=200):
            self.request_sync("watch")

    # -- the worker ------------------------------------------------------------------------

    def _work(self) -> None:
        retry: set[str] = set()  # the triggers of a sync that broke, to serve again
        pause = 0.0
        while True:
            with self._wake:
                due = time.monotonic() + pause
                while not self._pending and not self._stop.is_set():
                    if retry and time.monotonic() >= due:
                        break
                    self._wake.wait(max(due - time.monotonic(), 0.0) if retry else None)
                if self._stop.is_set():
                    return
                # a retry is no explicit request again: it records only what it changes
                again = {"poll" if retry & _FETCHING else "drift"} if retry else set()
                triggers, self._pending = self._pending | again, set()
            if self._serve(triggers):
                retry, pause = set(), 0.0
            else:
                retry = triggers
                pause = min(max(pause * 2, RETRY_FIRST), self.config.drift_interval)

    def _serve(self, triggers: set[str]) -> bool:
        """Run one sync for `triggers`; False when it broke (it is then reported)."""
        trigger = next((t for t in _ORDER if t in triggers), "drift")
        try:
            self.log.close_unfinished()
            self._sync(trigger, fetch=bool(triggers & _FETCHING))
        except Exception as exc:  # Docker or the store refused, or a bug: never the end
            message = self.faults.report("sync", exc)
            self.log.fail(trigger, message, explicit=trigger in _EXPLICIT)
            return False
        self.faults.clear("sync")
        return True

    def _sync(self, trigger: str, *, fetch: bool) -> None:
        explicit = trigger in _EXPLICIT
        if self._setting("suspended") == "1":
            if explicit:
                self.log.record(None, trigger, "skipped", Plan(()))
            return
        self._reported = False
        self._refresh(fetch, trigger)
        explicit = explicit and not self._reported  # a failure already answered the request
        good = self._good
        if good is None:
            return
        me = self._identity()
        self.health.watch([i for i in good.desired.installations if me and i.node == me.name])
        self._configure_remediation(good)
        self._configure_ai(good)
        commit = good.commit
        if (
            self._held is not None
            and commit is not None
            and self._held[0] == commit.sha
            and self._approved != commit.sha
        ):
            return  # still waiting for approval
        leading = self.leading
        self._run(good, trigger, explicit, _Share(self.node, self.provider, self.log, leading))
        if leading:  # the nodes without a nebulad of their own are the leader's to apply
            for node in good.desired.repo.config.nodes:
                if node.driven and not self._stop.is_set():
                    self._drive(good, trigger, node)

    def _run(self, good: _Good, trigger: str, explicit: bool, share: _Share) -> None:
        """Apply `share` of `good` under its locks: planned under them, so the removals guard
        judges the plan that is carried out. The node's own lock, and the cluster-wide one with
        the leader's work: nodes apply at the same time."""
        holder = f"nebulad {self.node}" if self.node else "nebulad"
        try:
            with self.store.apply_lock(
                holder if share.log is self.log else f"{holder}, driving {share.node}",
                lambda msg: log.warning("%s", msg),
                self._stop,
                node=share.node,
                cluster=share.cluster,
            ):
                self._apply(good, trigger, explicit=explicit, share=share)
        except WaitStoppedError:
            log.info("stopping: no longer waiting for the apply lock")

    def _drive(self, good: _Good, trigger: str, node: Node) -> None:
        """Apply the share of driven `node` through its `docker:` URL. A node that fails is
        reported (a fault, a failed sync of its own) and the other nodes go on."""
        assert node.docker is not None
        known = self._driven.get(node.name)
        if known is None or known[0].base_url != node.docker:
            if known is not None:
                known[0].close()
            provider = DockerProvider(node.docker, files_dir=self.config.data_dir / "files")
            known = self._driven[node.name] = (provider, SyncLog(self.store, self.bus, node.name))
        provider, synclog = known
        fault = f"node {node.name}"
        try:
            self._run(good, trigger, False, _Share(node.name, provider, synclog, cluster=False))
        except Exception as exc:  # this node's engine or records: never the other nodes'
            synclog.fail(trigger, self.faults.report(fault, exc), explicit=False)
            return
        self.faults.clear(fault)

    def _apply(self, good: _Good, trigger: str, *, explicit: bool, share: _Share) -> None:
        """Plan `share` of `good` and carry the plan out (or hold it); under its locks. Every
        node plans its own installations; the leader's own share has the cluster-wide kinds."""
        commit = good.commit
        desired = good.desired
        synclog = share.log
        world = World(
            lambda: self.store,
            vault_secrets(self.store),
            node=share.node,
            progress=lambda what, message: self.bus.publish(
                "progress", id=synclog.current, installation=what, message=message
            ),
            store_open=True,
            commit=commit.sha if commit else None,
            docker_provider=share.provider,
            dashboard=self.config.dashboard,
        )
        # The node's own engine, whose events the daemon watches: a push that left its
        # containers as they were need not look at them (`daemon.containers`).
        events = self.containers.events
        placed_here = ContainerKeeper.share(desired, world.node_spec(desired))
        watched = share.provider is self.provider and "docker-events" not in self.faults.current()
        left_out = self.containers.left_out(desired, placed_here, trigger, events_watched=watched)
        only = [
            k
            for k in pipeline.KIND_NAMES
            if (share.cluster or k in NODE_KINDS)
            and (k != "dns" or self.dns.due(desired.zones))
            and k not in left_out
        ]
        applied_key = setting_key("applied_commit", synclog.node)

        def allow(plan: Plan) -> bool:
            """Hold a plan the prune guard refuses (until approved); begin a sync that changes
            something."""
            if not plan.has_changes:
                return True
            if commit is not None and self._approved != commit.sha and plan.unsafe(self._prune):
                sync_id = synclog.record(commit, trigger, "held", plan)
                self._held = (commit.sha, sync_id)
                self.bus.publish("sync_held", id=sync_id, commit=commit.sha)
                return False
            sync_id = synclog.begin(commit, trigger)
            self.bus.publish(
                "sync_started", id=sync_id, commit=commit.sha if commit else None, trigger=trigger
            )
            return True

        outcome = pipeline.run(desired, world, only=only, allow=allow)
        if outcome.applied is None:
            return
        if "routes" in only:
            self.proxy.applied(outcome.of("routes"))
        if "dns" in only:
            self.dns.applied(desired.zones, outcome.of("dns"))
        if watched and not left_out:
            self.containers.planned(placed_here, events, outcome)
        plan, errors = outcome.plan, outcome.errors
        new_commit = commit is not None and commit.sha != self.store.setting(applied_key)
        if not plan.has_changes:
            if new_commit or explicit:
                result: SyncStatus = "failed" if errors else "succeeded"
                synclog.record(commit, trigger, result, plan, errors=errors)
            return
        status: SyncStatus = "succeeded" if not errors else "failed"
        sync_id = synclog.current
        assert sync_id is not None  # begun by `allow`
        info = synclog.finish(
            sync_id,
            status=status,
            errors=errors,
            summary=plan.counts(),
            changes=outcome.change_records(),
        )
        if commit is not None:
            self.store.set_setting(applied_key, commit.sha)
        if self._held is not None and commit is not None and self._held[0] == commit.sha:
            self._held = None
        synclog.count(info, plan, drift=trigger == "drift")
        self.bus.publish("sync_finished", id=sync_id, status=status, errors=errors)

    @property
    def _prune(self) -> int | None:
        return self.config.prune_max

    def domains(self) -> list[dict[str, Any]]:
        return queries.domains(self.store)

    def domain_records(self, domain: str) -> dict[str, Any]:
        found = queries.domain_records(self.store, domain)
        if found is None:
            raise ControlError("not_found", f"no domain {domain}")
        return found

    def domain_ssl(self, domain: str, check: bool) -> dict[str, Any]:
        return self.proxy.domain_ssl(domain, self._desired(), check)

    def _project_world(self) -> World:
        return World(
            lambda: self.store,
            vault_secrets(self.store),
            store_open=True,
            docker_provider=self.provider,
            node=self.node,
            dashboard=self.config.dashboard,
        )

    def _desired(self) -> Desired | None:
        good = self._good
        return good.desired if good else None

    def _fingerprints(self) -> dict[str, str]:
        """The vault's secret fingerprints, for planning (no master key needed)."""
        return open_vault(self.store).fingerprints()

    def _vault_changed(self) -> bool:
        """Whether a secret was set, rotated or removed since the last look: the commit is then
        resolved again (new values roll out; a commit that named a missing secret may load)."""
        seen, self._vault_seen = self._vault_seen, self._fingerprints()
        return seen is not None and seen != self._vault_seen

    def _refresh(self, fetch: bool, trigger: str) -> None:
        """Bring `_good` up to date with the commit to follow (fetching it first if asked)."""
        stale = self._vault_changed()
        if stale:
            self._bad_commit = None
            self.dns.forget()
        if self.source is None:  # watch mode: the folder as it is now
            if fetch or self._good is None or stale:
                try:
                    self._good = _Good(None, self._load(Path(self.config.source)))
                except ConfigError as exc:
                    self._failed(None, trigger, exc)
            return
        if not fetch and self._good is not None and not stale:
            return
        pinned = self._setting("pinned_commit")
        try:
            commit = self.source.commit_info(pinned) if pinned else self.source.fetch()
        except NebulaError as exc:
            self.log.failed(None, trigger, [str(exc)])
            self._reported = True
            return
        if (
            self._good is not None
            and self._good.commit is not None
            and commit.sha == self._good.commit.sha
            and not stale
        ):
            return
        if commit.sha == self._bad_commit:
            return
        if self._held is not None and self._held[0] != commit.sha:  # a newer commit supersedes
            self.store.set_sync_status(self._held[1], "superseded")
            self._held = None
        try:
            self._good = _Good(commit, self._load(self.source.checkout(commit.sha)))
        except ConfigError as exc:
            self._failed(commit, trigger, exc)
            self._restore_last_applied()
        return None

    def _restore_last_applied(self) -> None:
        """After a restart the last good state is not in memory: load the last applied commit."""
        if self._good is not None or self.source is None:
            return
        applied = self._setting("applied_commit")
        if applied:
            try:
                commit = self.source.commit_info(applied)
                self._good = _Good(commit, self._load(self.source.checkout(applied)))
            except NebulaError:
                log.exception("cannot reload the last applied commit %s", applied)

    def _failed(self, commit: Commit | None, trigger: str, exc: ConfigError) -> None:
        self._reported = True
        if commit is not None:
            self._bad_commit = commit.sha
        self.log.failed(commit, trigger, [str(issue) for issue in exc.issues])
        log.warning(
            "commit %s is invalid; keeping the last good state",
            commit.short if commit else "(folder)",
        )

    def _setting(self, key: str) -> str | None:
        """One of this node's settings (applied_commit, suspended, pinned_commit)."""
        return self.store.setting(setting_key(key, self.node))

    def _set_setting(self, key: str, value: str | None) -> None:
        self.store.set_setting(setting_key(key, self.node), value)

    # -- the nodes -------------------------------------------------------------------------

    @property
    def leading(self) -> bool:
        """Whether this nebulad runs the cluster-wide work: it was elected, or it is the only
        one (started without --node, as a single-node homelab's is)."""
        return self.node is None or self.membership.leading

    def _identity(self) -> Node | None:
        """The node this nebulad is, in the last good commit: its --node, else the first."""
        good = self._good
        if good is None:
            return None
        nodes = good.desired.repo.config.nodes
        return next((n for n in nodes if self.node in (None, n.name)), None)

    def _lead(self, leading: bool) -> None:
        """Leadership came or went (the election thread): scheduled workflows fire on the
        leader only; a new leader syncs at once, planning from what is really there."""
        self.remediation.workflows.lead(leading)
        if leading:
            self.request_sync("leader")
        else:
            self.dns.forget()  # planned afresh should it lead again

    def _load(self, root: Path) -> Desired:
        """The desired state of the commit at `root`, refused when this nebulad cannot follow
        it (see `daemon.cluster.node_issues`)."""
        desired = load_desired(root, self._fingerprints)
        sqlite = self.store.engine.dialect.name == "sqlite"
        node_issues(desired.repo.config.nodes, self.node, sqlite, str(root))
        return desired

    # -- DaemonControl ---------------------------------------------------------------------

    def status(self) -> DaemonStatus:
        syncs = self.store.syncs(limit=1, node=self.node)  # this node's last
        return DaemonStatus(
            node=self.node or socket.gethostname(),
            leader=self.leading,
            source=self.source.display_url if self.source else self.config.source,
            branch=self.config.branch,
            subfolder=self.config.subfolder,
            applied_commit=self._setting("applied_commit"),
            suspended=self._setting("suspended") == "1",
            pinned_commit=self._setting("pinned_commit"),
            last_sync=syncs[0] if syncs else None,
            installations=len(self.store.installations()),
            faults=self.faults.current(),
        )

    def installations(self) -> list[dict[str, Any]]:
        return queries.installations(self.store, self.provider.observe().containers)

    def nodes(self) -> list[dict[str, Any]]:
        good = self._good
        if good is None:
            return []
        config = good.desired.repo.config
        placed: dict[str, list[str]] = {}
        for installation in good.desired.installations:
            placed.setdefault(installation.node, []).append(installation.name)
        statuses: dict[str, dict[str, str]] = {}
        for row in self.store.installations():  # a row of before nodes: the first node's
            statuses.setdefault(row.node or config.nodes[0].name, {})[row.name] = row.status
        found, now = nodes_db.nodes(self.store)
        return listing(config.nodes, placed, statuses, found, now)

    def logs(self, installation: str, service: str | None, tail: int) -> list[dict[str, str]]:
        found = self._containers(installation, service)
        mask = self.ai.masking.masker()
        lines = logs.read(self.provider, found, tail=tail, since=None)
        return [_masked_line(line, mask) for line in lines]

    def follow_logs(self, installation: str, service: str | None, tail: int) -> Iterator[Event]:
        found = self._containers(installation, service)
        mask = self.ai.masking.masker()
        lines = logs.follow(self.provider, found, tail=tail, since=None)
        try:
            for line in lines:
                yield Event("log", _masked_line(line, mask), datetime.now(UTC))
        finally:
            lines.close()

    def _containers(self, installation: str, service: str | None) -> list[ObservedContainer]:
        try:
            return logs.containers(self.provider, installation, service)
        except logs.UnknownTargetError as exc:
            raise ControlError("not_found", str(exc)) from None

    def restart(self, installation: str, service: str | None) -> list[str]:
        found = self._containers(installation, service)
        for container in found:
            self.provider.restart_container(container.name)
        return [c.name for c in found]

    def audit_entries(self, actor: str | None, target: str | None, limit: int) -> list[AuditRecord]:
        return audit_log.entries(self.store, actor=actor, target=target, limit=limit)[::-1]

    def secret_names(self) -> list[dict[str, Any]]:
        secrets = open_vault(self.store).secrets()
        return [{"name": s.name, "rotated_at": s.rotated_at} for s in secrets]

    def syncs(self, limit: int = 20) -> list[SyncRecord]:
        return self.store.syncs(limit)

    def sync(self, sync_id: int) -> SyncRecord | None:
        return self.store.sync(sync_id)

    def approve(self, sync_id: int) -> SyncRecord:
        record = self.store.sync(sync_id)
        if record is None:
            raise ControlError("not_found", f"no sync {sync_id}")
        if self._held is None or self._held[1] != sync_id:
            raise ControlError(
                "conflict", f"sync {sync_id} is {record.status}, not waiting for approval"
            )
        self._approved = self._held[0]
        self.request_sync("approve")
        return record

    def suspend(self) -> None:
        self._set_setting("suspended", "1")
        self.bus.publish("suspended")

    def resume(self) -> None:
        self._set_setting("suspended", "0")
        self._set_setting("pinned_commit", None)
        self.bus.publish("resumed")
        self.request_sync("manual")

    def rollback(self, commit: str) -> str:
        if self.source is None:
            raise ControlError(
                "invalid", "rollback needs a git source; this daemon follows a folder"
            )
        try:
            sha = self.source.commit_info(commit).sha
        except NebulaError as exc:
            raise ControlError("not_found", str(exc)) from None
        self._set_setting("pinned_commit", sha)
        self.bus.publish("rollback", commit=sha)
        self.request_sync("rollback")
        return sha

    def webhook(self, headers: dict[str, str], body: bytes) -> bool:
        push = verify_and_parse(headers, body, self.config.webhook_secret or "")
        if push is None or (
            push.branch is not None
            and push.branch != self.config.branch
            and push.branch not in self._project_branches()
        ):
            return False
        self.request_sync("webhook")  # a project's new commit is found by the sync's plan
        return True

    def _project_branches(self) -> set[str]:
        """The branches the last good commit's projects deploy: a push to one, from the
        project's forge (with the same secret), starts a sync."""
        desired = self._desired()
        projects = desired.projects if desired else ()
        return {env.branch for p in projects for env in p.environments.values()}

    def marketplace_packages(self, query: str, category: str | None) -> list[dict[str, Any]]:
        return self.marketplace.packages(query, category)

    def marketplace_package(self, name: str) -> dict[str, Any]:
        return self.marketplace.package(name)

    def install(self, request: dict[str, Any], actor: str) -> dict[str, Any]:
        return self.marketplace.install(request, actor)

    def uninstall(self, name: str, actor: str) -> dict[str, Any]:
        return self.marketplace.uninstall(name, actor)

    def save_definition(
        self, folder: str, name: str, document: dict[str, Any], actor: str, create: bool
    ) -> dict[str, Any]:
        return self.marketplace.save_definition(folder, name, document, actor, create=create)

    def subscribe(self) -> Iterator[Event]:
        return self.bus.subscribe(heartbeat=15.0)

    def incidents(self, status: str | None, limit: int) -> list[IncidentInfo]:
        return self.remediation.incidents.list(status, limit)

    def incident(self, incident_id: str) -> IncidentInfo:
        return self.remediation.incident(incident_id)

    def acknowledge_incident(self, incident_id: str, actor: str) -> IncidentInfo:
        return self.remediation.incidents.acknowledge(incident_id, actor)

    def resolve_incident(self, incident_id: str, actor: str, resolution: str) -> IncidentInfo:
        return self.remediation.incidents.resolve(incident_id, actor, resolution)

    def fire_alert(self, request: dict[str, Any], actor: str) -> dict[str, Any]:
        received = self.remediation.fire(request, actor)
        return {"outcome": received.outcome, "incident": received.incident}

    def alertmanager(self, payload: Any) -> list[dict[str, Any]]:
        return [
            {"outcome": r.outcome, "incident": r.incident}
            for r in self.remediation.alertmanager(payload)
        ]

    def silences(self) -> list[SilenceInfo]:
        return self.remediation.silences.active()

    def add_silence(
        self, matchers: list[str], duration: float, comment: str, actor: str
    ) -> SilenceInfo:
        return self.remediation.add_silence(matchers, duration, comment, actor)

    def remove_silence(self, silence_id: str, actor: str) -> None:
        self.remediation.silences.remove(silence_id, actor)

    def runbooks(self) -> list[RunbookRecord]:
        return self.remediation.runbooks()

    def run_runbook(
        self, name: str, labels: dict[str, str], actor: str, dry_run: bool
    ) -> dict[str, Any]:
        return self.remediation.run(name, labels, actor, dry_run)

    def executions(
        self, runbook: str | None, incident_id: str | None, limit: int
    ) -> list[ExecutionInfo]:
        return self.remediation.executions(runbook, incident_id, limit)

    def execution(self, execution_id: str) -> ExecutionInfo:
        return self.remediation.execution(execution_id)

    def decide(self, execution_id: str, approved: bool, actor: str) -> ExecutionInfo:
        return self.remediation.decide(execution_id, approved, actor)

    def workflows(self) -> list[dict[str, Any]]:
        following = self.remediation.workflows.next_runs()
        listed = []
        for record in self.store.workflows():
            last = self.store.executions(runbook=record.name, kind="workflow", limit=1)
            listed.append(
                {
                    "name": record.name,
                    "file": record.file,
                    "on": record.definition["on"],
                    "next_run": following.get(record.name),
                    "last_run": (
                        {
                            "id": last[0].id,
                            "status": last[0].status,
                            "started_at": last[0].started_at,
                        }
                        if last
                        else None
                    ),
                }
            )
        return listed

    def run_workflow(self, name: str, actor: str) -> str:
        try:
            run_id = self.remediation.workflows.run_by_hand(name, actor)
        except WorkflowError as exc:
            if exc.reason == "not_found":
                raise ControlError("not_found", str(exc)) from None
            raise ControlError("invalid", str(exc)) from None
        if run_id is None:
            last = self.store.executions(runbook=name, kind="workflow", limit=1)
            going = last[0].id if last and last[0].status == "running" else "RUN"
            raise ControlError(
                "conflict",
                f"a run of {name} is going and its concurrency is skip: this start is skipped; "
                f"wait for it to end, or stop it with `nebula workflows cancel {going}`",
            )
        return run_id

    def workflow_runs(self, workflow: str | None, limit: int) -> list[ExecutionInfo]:
        return self.store.executions(runbook=workflow, kind="workflow", limit=limit)

    def workflow_run(self, run_id: str) -> ExecutionInfo:
        found = self.store.execution(run_id)
        if found is None or found.kind != "workflow":
            raise ControlError(
                "not_found", f"no workflow run {run_id}: see `nebula workflows runs`"
            )
        return found

    def cancel_workflow_run(self, run_id: str, actor: str) -> None:
        run = self.workflow_run(run_id)
        try:
            self.remediation.workflows.cancel(run_id, actor)
        except WorkflowError:
            raise ControlError(
                "conflict", f"run {run_id} is not running (it is {run.status}): nothing to cancel"
            ) from None


_ORDER = (
    *("rollback", "approve", "manual", "hook", "webhook", "watch", "poll", "start", "leader"),
    "drift",
)


def _masked_line(line: logs.ServiceLine, mask: Callable[[str], str]) -> dict[str, str]:
    return {**line.to_dict(), "message": mask(line.line.message)}
