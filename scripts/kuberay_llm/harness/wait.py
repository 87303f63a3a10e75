"""`kuberay-llm wait NAME`: watch a RayService until it serves, and fail fast with the cause when it cannot.

List, then watch from the list's resourceVersion, the RayService, the pods of its RayCluster (label
`ray.io/cluster`; the cluster is `<rayservice>-<5 random chars>`) and the namespace's events; every change
is assessed at once (no sleep-polling), grace periods let transient states resolve. Exit codes
(kuberay_llm/exitcodes.py): 0 healthy, 1 failed (cause printed), 2 usage, 3 cluster unreachable, 4 timed out.
"""

from __future__ import annotations

import argparse
import os
import queue
import re
import shutil
import sys
import threading
import time
from collections import OrderedDict

from kuberay_llm import settings
from kuberay_llm.harness.errors import ConnectionFailed, Failed, TimedOut
from kuberay_llm.harness.health import FAILED, HEALTHY, Assessor, Observed, Verdict, pod_state
from kuberay_llm.harness.kube import EVENT, POD, RAYSERVICE, ApiError, Informer, Kube, Unreachable, forbidden_message

_MAX_EVENTS = 500


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="RayService name (metadata.name of the overlay's RayService)")
    parser.add_argument("-n", "--namespace", help="namespace (default: the kube context's)")
    parser.add_argument("--timeout", help="give up after this long (default KUBERAY_LLM_WAIT_TIMEOUT or 45m)")


def cluster_names(rs: dict | None) -> set[str]:
    status = (rs or {}).get("status") or {}
    return {n for n in ((status.get(k) or {}).get("rayClusterName") for k in
                        ("activeServiceStatus", "pendingServiceStatus")) if n}


class Progress:
    """A live line on a terminal; one log line per change otherwise."""

    def __init__(self, out=sys.stderr):
        self.out = out
        self.tty = out.isatty() and os.environ.get("TERM") != "dumb"
        self.last = None

    def show(self, line: str, elapsed: float) -> None:
        stamp = _clock(elapsed)
        if self.tty:
            width = shutil.get_terminal_size((120, 20)).columns
            self.out.write("\r\033[K" + f"[{stamp}] {line}"[: width - 1])
            self.out.flush()
        elif line != self.last:
            print(f"[{stamp}] {line}", file=self.out, flush=True)
        self.last = line

    def message(self, line: str) -> None:
        if self.tty:
            self.out.write("\r\033[K")
        print(line, file=self.out, flush=True)
        if self.tty and self.last:
            self.last = None

    def done(self) -> None:
        """End the live line, so the verdict or error starts on a line of its own."""
        if self.tty and self.last is not None:
            self.out.write("\n")
            self.out.flush()
            self.last = None


class Waiter:
    def __init__(self, kube: Kube, name: str, timeout: float, progress: Progress | None = None):
        self.kube, self.name, self.timeout = kube, name, timeout
        self.namespace = kube.namespace
        self.progress = progress or Progress()
        self.events: queue.Queue = queue.Queue()
        self.stop = threading.Event()
        self.rayservice: dict | None = None
        self.synced: set[str] = set()  # informers that have listed once
        self.pods: dict[str, dict] = {}
        self.cluster_events: OrderedDict[str, dict] = OrderedDict()
        self.logs: dict[str, str] = {}
        self.assessor = Assessor()
        self.pattern = re.compile(rf"^{re.escape(name)}-[a-z0-9]{{5}}$")
        self.disconnected_since: float | None = None

    # -- which objects belong to this RayService ---------------------------------------------------------

    def _ours(self, cluster: str | None) -> bool:
        if not cluster:
            return False
        names = cluster_names(self.rayservice)
        return cluster in names if names else bool(self.pattern.match(cluster))

    def _pod_cluster(self, pod: dict) -> str | None:
        return ((pod.get("metadata") or {}).get("labels") or {}).get("ray.io/cluster")

    def _event_relevant(self, event: dict) -> bool:
        involved = event.get("involvedObject") or {}
        kind, name = involved.get("kind"), involved.get("name") or ""
        if kind == "RayService":
            return name == self.name
        if kind == "RayCluster":
            return self._ours(name)
        if kind == "Pod":
            return name in self.pods or bool(re.match(rf"^{re.escape(self.name)}-[a-z0-9]{{5}}-", name))
        return False

    # -- the loop ---------------------------------------------------------------------------------------

    def run(self) -> Verdict:
        start = time.monotonic()
        deadline = start + self.timeout
        field = [("fieldSelector", f"metadata.name={self.name}")]
        informers = [
            Informer(self.kube, "rayservice", RAYSERVICE.path(self.namespace), field, self.events, self.stop),
            Informer(self.kube, "pods", POD.path(self.namespace), [("labelSelector", "ray.io/cluster")],
                     self.events, self.stop),
            Informer(self.kube, "events", EVENT.path(self.namespace), [], self.events, self.stop),
        ]
        for informer in informers:
            informer.start()
        try:
            verdict = None
            while True:
                now = time.monotonic()
                if now >= deadline:
                    raise TimedOut(self._timeout_message(verdict))
                wake = deadline - now
                expiry = self.assessor.next_expiry()
                if expiry is not None:
                    wake = min(wake, expiry + 0.01)
                if self.progress.tty:
                    wake = min(wake, 1.0)  # the elapsed time on the live line
                try:
                    item = self.events.get(timeout=wake)
                except queue.Empty:
                    item = None
                changed = item is not None
                while item is not None:
                    self._handle(item)
                    try:
                        item = self.events.get_nowait()
                    except queue.Empty:
                        item = None
                # The first verdict waits for every list: healthy may depend on the events (a serve config
                # KubeRay has just submitted) and failures on the pods.
                if self.synced != {"rayservice", "pods", "events"}:
                    continue
                verdict = self._assess()
                if changed or self.progress.tty or verdict.state != "waiting":
                    self.progress.show(verdict.summary, time.monotonic() - start)
                if verdict.state == HEALTHY:
                    return verdict
                if verdict.state == FAILED:
                    raise Failed(self._with_details(verdict))
        finally:
            self.stop.set()
            self.progress.done()

    def observed(self) -> Observed:
        """What is known now: the RayService, the pods of its clusters, their events (oldest first), logs."""
        events = [e for e in self.cluster_events.values() if self._event_relevant(e)]
        events.sort(key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
        return Observed(self.rayservice, {n: p for n, p in self.pods.items() if self._ours(self._pod_cluster(p))},
                        events, self.logs)

    def snapshot(self, *, with_logs: bool = True) -> Observed:
        """One look without a watch (`status`, `diagnose`): list the RayService, the pods and the events."""
        self.rayservice = self.kube.get(RAYSERVICE.path(self.namespace, self.name))
        if self.rayservice is None:
            raise Failed(f"RayService {self.namespace}/{self.name} not found")
        pods = self.kube.request("GET", POD.path(self.namespace), query=[("labelSelector", "ray.io/cluster")])["items"]
        self.pods = {p["metadata"]["name"]: p for p in pods}
        for event in self.kube.request("GET", EVENT.path(self.namespace))["items"]:
            self.cluster_events[event["metadata"].get("uid") or event["metadata"]["name"]] = event
        if with_logs:
            self._fetch_crash_logs()
        return self.observed()

    def _assess(self) -> Verdict:
        self._fetch_crash_logs()
        verdict = self.assessor.assess(self.observed())
        if self.disconnected_since is not None and verdict.state == "waiting":
            verdict.summary = "API server unreachable, reconnecting | " + verdict.summary
        return verdict

    def _handle(self, item) -> None:
        key, kind, payload = item
        if kind == "DISCONNECTED":
            if self.disconnected_since is None:
                self.disconnected_since = time.monotonic()
                self.progress.message(f"lost the API server ({payload}); reconnecting")
            return
        if kind == "FATAL":
            err: ApiError = payload
            if err.status in (401, 403):
                raise ConnectionFailed(f"cannot watch {key} in namespace {self.namespace}: {forbidden_message(err)}")
            if key == "rayservice":
                raise ConnectionFailed(f"the cluster has no RayService API ({err.message}): install the KubeRay "
                                       "operator (see `kuberay-llm apply --help`)")
            raise ConnectionFailed(f"cannot watch {key}: {err.message}")
        if self.disconnected_since is not None and kind == "SYNC":
            self.progress.message(f"reconnected after {time.monotonic() - self.disconnected_since:.1f}s")
            self.disconnected_since = None
        if key == "rayservice":
            self._handle_rayservice(kind, payload)
        elif key == "pods":
            if kind == "SYNC":
                self.pods = {p["metadata"]["name"]: p for p in payload}
            elif kind == "DELETED":
                self.pods.pop(payload["metadata"]["name"], None)
            else:
                self.pods[payload["metadata"]["name"]] = payload
        elif key == "events":
            if kind == "SYNC":
                self.cluster_events.clear()
                for event in payload:
                    self.cluster_events[event["metadata"]["uid"]] = event
            elif kind != "DELETED":
                self.cluster_events[payload["metadata"]["uid"]] = payload
                self.cluster_events.move_to_end(payload["metadata"]["uid"])
            while len(self.cluster_events) > _MAX_EVENTS:
                self.cluster_events.popitem(last=False)
        if kind == "SYNC":  # after handling it: _handle_rayservice tells a first list from a relist by it
            self.synced.add(key)

    def _handle_rayservice(self, kind: str, payload) -> None:
        where = f"RayService {self.namespace}/{self.name}"
        if kind == "SYNC":
            found = payload[0] if payload else None
            if found is None:
                if "rayservice" not in self.synced:
                    raise Failed(f"{where} not found (apply it first: kuberay-llm apply OVERLAY -n {self.namespace})")
                raise Failed(f"{where} was deleted while waiting")
            self.rayservice = found
        elif kind == "DELETED":
            raise Failed(f"{where} was deleted while waiting")
        else:
            self.rayservice = payload

    def _fetch_crash_logs(self) -> None:
        """Last log lines of crash-looping or OOM-killed containers, fetched once per restart."""
        for name, pod in self.pods.items():
            for container in (pod.get("status") or {}).get("containerStatuses") or []:
                waiting = (container.get("state") or {}).get("waiting") or {}
                terminated = (container.get("lastState") or {}).get("terminated") or {}
                if waiting.get("reason") != "CrashLoopBackOff" and terminated.get("reason") != "OOMKilled":
                    continue
                key = f"{name}/{container['name']}"
                if key in self.logs:
                    continue
                self.logs[key] = fetch_logs(self.kube, self.namespace, name, container["name"], previous=True)

    def _timeout_message(self, verdict: Verdict | None) -> str:
        state = verdict.summary if verdict else "RayService not seen yet"
        hint = ""
        if any(pod_state(p) == "not scheduled yet" for p in self.pods.values() if self._ours(self._pod_cluster(p))):
            hint = " — pods are not scheduled yet: no scheduler has placed them (is there a scheduler and a node?)"
        return f"timed out after {_clock(self.timeout)} waiting for RayService {self.namespace}/{self.name}: {state}{hint}"

    def _with_details(self, verdict: Verdict) -> str:
        return verdict.summary + ("\n" + "\n".join(verdict.details) if verdict.details else "")


def fetch_logs(kube: Kube, namespace: str, pod: str, container: str, *, previous: bool = False,
               lines: int | None = None) -> str:
    """The last log lines of a container, or a one-line note why there are none (no kubelet, no rights)."""
    query = [("container", container), ("tailLines", str(lines or settings.log_lines()))]
    if previous:
        query.append(("previous", "true"))
    try:
        return kube.text(f"{POD.path(namespace, pod)}/log", query)
    except ApiError as err:
        if previous and err.status == 400:
            return fetch_logs(kube, namespace, pod, container, previous=False, lines=lines)
        return f"(no logs: {err.message})"
    except Unreachable as exc:
        return f"(no logs: {exc})"


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m{seconds % 60:02d}s" if seconds >= 3600 else \
        f"{seconds // 60}m{seconds % 60:02d}s"


def run(args: argparse.Namespace) -> int:
    timeout = (settings.parse_duration(args.timeout, what="--timeout") if args.timeout else settings.wait_timeout())
    kube = Kube.connect(args.namespace)
    kube.check_reachable()
    progress = Progress()
    verdict = Waiter(kube, args.name, timeout, progress).run()
    print(f"RayService {kube.namespace}/{args.name} is healthy: {verdict.summary}")
    return 0
