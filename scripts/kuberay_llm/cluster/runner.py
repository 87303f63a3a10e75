"""One container of a pod on the local kubelet: start it, probe it, restart it by the pod's restartPolicy with
the kubelet's back-off (10 s doubling to 5 min, CrashLoopBackOff meanwhile), and report each state on the pod.
Stopping is the pod worker's (kubelet.py): it sends the signals, this loop sees the exit and ends."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from kuberay_llm.cluster import containers, probes

if TYPE_CHECKING:
    from kuberay_llm.cluster.kubelet import PodWorker

BACKOFF_START_S, BACKOFF_MAX_S = 10.0, 300.0


def waiting_status(container: dict, reason: str, message: str = "", restarts: int = 0,
                   last: dict | None = None) -> dict:
    waiting = {"reason": reason, **({"message": message} if message else {})}
    return {"name": container["name"], "image": container.get("image", ""), "imageID": "", "ready": False,
            "started": False, "restartCount": restarts, "state": {"waiting": waiting}, "lastState": last or {}}


class ContainerRunner(threading.Thread):
    """Start, probe, restart (by the pod's restartPolicy, with back-off) and stop one container."""

    def __init__(self, worker: PodWorker, container: dict, init: bool):
        super().__init__(daemon=True, name=f"container-{worker.name}/{container['name']}")
        self.worker, self.container, self.init = worker, container, init
        self.name = container["name"]
        self.restarts = 0
        self.last_state: dict = {}
        self.final = False
        self.final_code: int | None = None
        self.process: containers.ContainerProcess | None = None

    @property
    def table(self) -> dict:
        return self.worker.init_statuses if self.init else self.worker.statuses

    def set_status(self, state: dict, ready: bool = False, started: bool = False) -> None:
        container_id = f"local://{self.worker.uid[:8]}-{self.name}-{self.restarts}"
        self.table[self.name] = {"name": self.name, "image": self.container.get("image", ""), "imageID": "",
                                 "containerID": container_id, "ready": ready, "started": started,
                                 "restartCount": self.restarts, "state": state, "lastState": self.last_state}
        if not self.init:
            self.worker.ready[self.name] = ready
        self.worker.publish()

    def run(self) -> None:
        worker = self.worker
        backoff = BACKOFF_START_S
        policy = worker.pod["spec"].get("restartPolicy", "Always")
        while not worker.deleting.is_set():
            try:
                spec = worker.container_spec(self.container)
            except containers.ConfigError as err:
                self.table[self.name] = waiting_status(self.container, "CreateContainerConfigError", str(err),
                                                       self.restarts, self.last_state)
                worker.publish()
                worker.event("Warning", "Failed", f"Error: {err}", self.name)
                if worker.deleting.wait(BACKOFF_START_S):
                    break
                continue
            previous = worker.log_path(self.name, previous=True)
            if self.restarts and worker.log_path(self.name).exists():
                worker.log_path(self.name).replace(previous)
            root = worker.dir / "containers" / self.name
            self.process = containers.start(self.name, worker.netns, spec, root / "spec.json",
                                            worker.log_path(self.name))
            worker.event("Normal", "Started", f"Started container {self.name}", self.name)
            started_at = self.process.started_at
            has_readiness = not self.init and "readinessProbe" in self.container
            self.set_status({"running": {"startedAt": started_at}}, ready=not self.init and not has_readiness,
                            started=True)
            probers = [threading.Thread(target=self.probe_loop, args=(kind, self.process), daemon=True)
                       for kind in ("readinessProbe", "livenessProbe") if not self.init and kind in self.container]
            for prober in probers:
                prober.start()
            code = self.process.wait()
            finished = containers.now_rfc3339()
            terminated = {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                          "startedAt": started_at, "finishedAt": finished, "containerID":
                              f"local://{worker.uid[:8]}-{self.name}-{self.restarts}"}
            if worker.deleting.is_set():
                self.final, self.final_code = True, code
                self.set_status({"terminated": terminated})
                break
            if self.init and code == 0:
                self.final, self.final_code = True, 0
                self.set_status({"terminated": terminated}, ready=True)
                return
            restart = policy == "Always" or (policy == "OnFailure" and code != 0) or (self.init and policy != "Never")
            if not restart:
                self.final, self.final_code = True, code
                self.set_status({"terminated": terminated})
                return
            self.last_state = {"terminated": terminated}
            self.restarts += 1
            message = f"back-off {backoff:.0f}s restarting failed container={self.name} pod={worker.name}_" \
                      f"{worker.namespace}({worker.uid})"
            self.set_status({"waiting": {"reason": "CrashLoopBackOff", "message": message}})
            worker.event("Warning", "BackOff", "Back-off restarting failed container "
                         f"{self.name} in pod {worker.name}_{worker.namespace}({worker.uid})", self.name)
            if worker.deleting.wait(backoff):
                break
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    def probe_loop(self, kind: str, process: containers.ContainerProcess) -> None:
        probe = self.container[kind]
        conf = probes.settings(probe)
        worker = self.worker
        if worker.deleting.wait(conf["initialDelaySeconds"]):
            return
        successes = failures = 0
        ready = False
        label = "Readiness" if kind == "readinessProbe" else "Liveness"
        while process.proc.poll() is None and not worker.deleting.is_set():
            result = probes.run(probe, self.container, worker.ip, process.init_pid, process.env)
            if process.proc.poll() is not None:
                return
            if result.ok:
                successes, failures = successes + 1, 0
                if kind == "readinessProbe" and not ready and successes >= conf["successThreshold"]:
                    ready = True
                    self.set_status({"running": {"startedAt": process.started_at}}, ready=True, started=True)
            else:
                successes, failures = 0, failures + 1
                worker.event("Warning", "Unhealthy", f"{label} probe failed: {result.message}", self.name)
                if failures >= conf["failureThreshold"]:
                    if kind == "readinessProbe" and ready:
                        ready = False
                        self.set_status({"running": {"startedAt": process.started_at}}, ready=False, started=True)
                    elif kind == "livenessProbe":
                        worker.event("Normal", "Killing", f"Container {self.name} failed liveness probe, will be "
                                     "restarted", self.name)
                        process.stop(worker.grace())
                        return
            if worker.deleting.wait(conf["periodSeconds"]):
                return
