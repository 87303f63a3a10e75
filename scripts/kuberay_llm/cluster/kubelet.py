"""The local kubelet: runs the pods bound to the cluster's `runs: ray` node for real, on this machine.

For each pod it does what a kubelet and a CNI plugin do, with Linux namespaces instead of a container
runtime: a network namespace with the pod IP (network.py), the pod's volumes, init containers in order,
then every container as a process in its own mount/UTS/PID namespaces (containers.py, podinit.py), probes
(probes.py), restarts by restartPolicy with back-off (runner.py), events, and the pod's status written to the API
server. Its logs and ports are served through kwok's kubelet API (kwok `Logs` and `PortForward` objects
owned by the pod), so `kubectl logs` and `kubectl port-forward` work as on a real node.

There is no DNS server and no kube-proxy: each pod's /etc/hosts maps every Service name to the IPs of its
endpoints (refreshed every few seconds), which is what cluster DNS plus kube-proxy amount to for the
one-node traffic here. A namespace labelled SIMULATED_LABEL gets its pods simulated by kwok instead
(no processes), for looking at how a tier is scheduled without running it.

Run by `kuberay-llm cluster up` (controlplane.py) as root: `python -m kuberay_llm.cluster.kubelet STATE_DIR`.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import shutil
import sys
import threading
import time
import traceback
import uuid
from pathlib import Path

from kubernetes.utils.quantity import parse_quantity

from kuberay_llm.cluster import containers, gpus, network
from kuberay_llm.cluster.runner import BACKOFF_START_S, ContainerRunner, waiting_status
from kuberay_llm.cluster.kwok_config import SIMULATE_ANNOTATION
from kuberay_llm.harness.kube import ApiError, Kube

SIMULATED_LABEL = "kuberay-llm.local/pods"  # value "simulated"
CLUSTER_DOMAIN = "cluster.local"
HOSTS_REFRESH_S = 2.0
TOKEN_REFRESH_S = 2400.0  # kubelets refresh projected tokens at 80% of their life (3607 s by default)
DEFAULT_GRACE_S = 30
DEVICE_RECLAIM_S = 45.0  # how long an admission waits for the devices of pods being torn down


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


def decode_secret(data: dict | None) -> dict[str, str]:
    return {k: base64.b64decode(v).decode(errors="replace") for k, v in (data or {}).items()}


class Kubelet:
    def __init__(self, kube: Kube, state: dict, state_dir: Path):
        self.kube = kube
        self.nodes = {n["name"]: n for n in state["nodes"] if n["runs"] == "ray"}
        self.network = ipaddress.ip_network(state["pod_cidr"])
        self.host_ip = state["host_ip"]
        self.bridge = state["bridge"]
        self.prefix = state["netns_prefix"]
        self.api_port = state["api_port"]
        self.pods_dir = state_dir / "pods"
        self.workers: dict[str, PodWorker] = {}
        self.lock = threading.Lock()
        self.used_ips = {self.host_ip}
        self.services: dict[str, list[tuple[str, list[str]]]] = {}  # namespace -> [(service, [ips])]
        # The device plugin's part, per node with GPUs. On a machine with GPUs every container gets the
        # device env (none for a container that requests none); on one without, nothing changes.
        self.allocators = {name: gpus.Allocator(n["gpus"]) for name, n in self.nodes.items() if n.get("gpus")}

    # -- addresses ------------------------------------------------------------------------------------

    def allocate_ip(self) -> str:
        with self.lock:
            for address in self.network.hosts():
                text = str(address)
                if text not in self.used_ips:
                    self.used_ips.add(text)
                    return text
        raise RuntimeError(f"pod network {self.network} is full")

    def release_ip(self, address: str | None) -> None:
        with self.lock:
            self.used_ips.discard(address)

    def hosts_entries(self, namespace: str) -> list[str]:
        lines = []
        with self.lock:
            services = dict(self.services)
        for ns, entries in sorted(services.items()):
            for name, ips in entries:
                names = [f"{name}.{ns}", f"{name}.{ns}.svc", f"{name}.{ns}.svc.{CLUSTER_DOMAIN}"]
                if ns == namespace:
                    names.insert(0, name)
                lines += [f"{address}\t{' '.join(names)}" for address in ips]
        return lines

    def refresh_services(self) -> None:
        """Service name -> endpoint IPs (ready first), for every pod's /etc/hosts."""
        services = self.kube.request("GET", "/api/v1/services")["items"]
        slices = self.kube.request("GET", "/apis/discovery.k8s.io/v1/endpointslices")["items"]
        by_service: dict[tuple[str, str], list[tuple[bool, str]]] = {}
        for item in slices:
            key = (item["metadata"]["namespace"], (item["metadata"].get("labels") or {}).get(
                "kubernetes.io/service-name", ""))
            for endpoint in item.get("endpoints") or []:
                ready = (endpoint.get("conditions") or {}).get("ready") is not False
                by_service.setdefault(key, []).extend((not ready, a) for a in endpoint.get("addresses") or [])
        table: dict[str, list[tuple[str, list[str]]]] = {}
        for service in services:
            ns, name = service["metadata"]["namespace"], service["metadata"]["name"]
            ips = list(dict.fromkeys(a for _, a in sorted(by_service.get((ns, name), []))))
            if ips:
                table.setdefault(ns, []).append((name, ips))
        with self.lock:
            self.services = table
            workers = list(self.workers.values())
        for worker in workers:
            worker.write_hosts()
            worker.update_forwards(services)

    def services_loop(self) -> None:
        while True:
            try:
                self.refresh_services()
            except Exception as exc:  # noqa: BLE001 - keep refreshing; the API server may restart
                log(f"services refresh failed: {exc}")
            time.sleep(HOSTS_REFRESH_S)

    # -- pods -----------------------------------------------------------------------------------------

    def run(self) -> None:
        threading.Thread(target=self.services_loop, daemon=True, name="services").start()
        version = None
        while True:
            try:
                if version is None:
                    listing = self.kube.request("GET", "/api/v1/pods")
                    for pod in listing["items"]:
                        self.observe("ADDED", pod)
                    version = listing["metadata"]["resourceVersion"]
                for event in self.kube.watch("/api/v1/pods", [], version):
                    obj = event["object"]
                    version = obj["metadata"]["resourceVersion"]
                    if event["type"] != "BOOKMARK":
                        self.observe(event["type"], obj)
            except ApiError as err:
                if err.status == 410:
                    version = None
                else:
                    log(f"pod watch: {err}")
                    time.sleep(1)
            except Exception as exc:  # noqa: BLE001 - the API server restarting must not stop the kubelet
                log(f"pod watch: {exc}")
                time.sleep(1)

    def observe(self, kind: str, pod: dict) -> None:
        if pod["spec"].get("nodeName") not in self.nodes or \
                (pod["metadata"].get("annotations") or {}).get(SIMULATE_ANNOTATION) == "true":
            return
        uid = pod["metadata"]["uid"]
        with self.lock:
            worker = self.workers.get(uid)
            if worker is None and kind != "DELETED" and not pod["metadata"].get("deletionTimestamp") \
                    and (pod.get("status") or {}).get("phase") in (None, "Pending"):
                worker = self.workers[uid] = PodWorker(self, pod)
                worker.start()
        if worker is not None:
            worker.update(pod, deleted=kind == "DELETED")

    def forget(self, uid: str) -> None:
        with self.lock:
            self.workers.pop(uid, None)

    # -- API helpers ----------------------------------------------------------------------------------

    def lookup(self, namespace: str, kind: str, name: str) -> dict[str, str] | None:
        plural = {"ConfigMap": "configmaps", "Secret": "secrets"}[kind]
        obj = self.kube.get(f"/api/v1/namespaces/{namespace}/{plural}/{name}")
        if obj is None:
            return None
        return decode_secret(obj.get("data")) if kind == "Secret" else {**(obj.get("data") or {})}


class PodWorker(threading.Thread):
    """Everything the kubelet does for one pod, from sandbox to deletion."""

    def __init__(self, kubelet: Kubelet, pod: dict):
        meta = pod["metadata"]
        super().__init__(daemon=True, name=f"pod-{meta['namespace']}/{meta['name']}")
        self.kubelet, self.kube, self.pod = kubelet, kubelet.kube, pod
        self.namespace, self.name, self.uid = meta["namespace"], meta["name"], meta["uid"]
        self.node = kubelet.nodes[pod["spec"]["nodeName"]]
        self.dir = kubelet.pods_dir / f"{self.namespace}_{self.name}_{self.uid[:8]}"
        self.netns = f"{kubelet.prefix}-{self.uid[:8]}"
        self.ip: str | None = None
        self.deleting = threading.Event()
        self.lock = threading.RLock()
        self.statuses: dict[str, dict] = {}  # container name -> containerStatus
        self.init_statuses: dict[str, dict] = {}
        self.ready: dict[str, bool] = {}
        self.initialized = False
        self.sandbox = False
        self.phase = "Pending"
        self.conditions: dict[str, tuple[str, str]] = {}  # type -> (status, lastTransitionTime)
        self.last_published: str | None = None
        self.volumes: dict[str, dict] = {}
        self.events: dict[tuple[str, str, str], dict] = {}
        self.hosts_text = ""
        self.start_time = containers.now_rfc3339()
        self.runners: list[ContainerRunner] = []
        self.devices: dict[str, list[gpus.Gpu]] = {}  # container name -> its GPUs

    # -- lifecycle ------------------------------------------------------------------------------------

    def update(self, pod: dict, deleted: bool = False) -> None:
        self.pod = pod
        if (deleted or pod["metadata"].get("deletionTimestamp")) and not self.deleting.is_set():
            self.deleting.set()
            threading.Thread(target=self.stop_containers, daemon=True, name=f"stop-{self.name}").start()

    def stop_containers(self) -> None:
        """SIGTERM every running container, SIGKILL what is left after the grace period (in parallel)."""
        grace = self.grace()
        stoppers = []
        for runner in list(self.runners):
            process = runner.process
            if process is not None and process.proc.poll() is None:
                self.event("Normal", "Killing", f"Stopping container {runner.name}", runner.name)
                stoppers.append(threading.Thread(target=process.stop, args=(grace,), daemon=True))
        for stopper in stoppers:
            stopper.start()
        for stopper in stoppers:
            stopper.join()

    def run(self) -> None:
        try:
            if self.simulated():  # kwok runs its lifecycle from here on, deletion included
                self.kubelet.forget(self.uid)
                return
        except Exception as exc:  # noqa: BLE001 - the API server restarting: the next event retries
            log(f"{self.namespace}/{self.name}: {exc}")
            self.kubelet.forget(self.uid)
            return
        try:
            self.setup()
            while not self.deleting.is_set():
                try:
                    self.mount_volumes()
                    break
                except containers.ConfigError as err:  # as a kubelet: report, retry until it can mount
                    self.event("Warning", "FailedMount", str(err))
                    self.deleting.wait(BACKOFF_START_S)
            if not self.deleting.is_set() and self.run_init_containers():
                self.run_containers()
            self.deleting.wait()
        except gpus.AllocationError:  # reported by setup(); the pod stays Failed until it is deleted
            self.deleting.wait()
        except Exception as exc:  # noqa: BLE001 - report it on the pod instead of dying silently
            log(f"{self.namespace}/{self.name}: {traceback.format_exc()}")
            self.event("Warning", "FailedCreatePodSandBox", f"local kubelet: {exc}")
            self.deleting.wait()
        finally:
            self.teardown()

    def simulated(self) -> bool:
        namespace = self.kube.get(f"/api/v1/namespaces/{self.namespace}") or {}
        if (namespace.get("metadata", {}).get("labels") or {}).get(SIMULATED_LABEL) != "simulated":
            return False
        self.kube.request("PATCH", f"/api/v1/namespaces/{self.namespace}/pods/{self.name}",
                          body={"metadata": {"annotations": {SIMULATE_ANNOTATION: "true"}}},
                          content_type="application/merge-patch+json")
        return True

    def admit_devices(self) -> None:
        """The device plugin's Allocate for every container that requests GPUs; raises AllocationError."""
        allocator = self.kubelet.allocators.get(self.pod["spec"]["nodeName"])
        for container in (self.pod["spec"].get("initContainers") or []) + self.pod["spec"]["containers"]:
            count = gpus.requested(container)
            if count and allocator is None:
                raise gpus.AllocationError(f"container {container['name']} requests {count} {gpus.RESOURCE} but node "
                                           f"{self.pod['spec']['nodeName']} has no GPUs")
            if count:
                owner = f"{self.namespace}/{self.name}/{container['name']}"
                # The device manager reclaims the devices of pods no longer active before it allocates; here a
                # deleted pod frees its devices when its teardown ends, which may be just after the scheduler
                # placed the next pod: wait for that, not longer.
                deadline = time.monotonic() + DEVICE_RECLAIM_S
                while True:
                    try:
                        self.devices[container["name"]] = allocator.allocate(owner, count)
                        break
                    except gpus.AllocationError:
                        if time.monotonic() > deadline or self.deleting.wait(0.5):
                            raise
        if self.devices:
            text = "; ".join(f"{name}: " + ", ".join(f"GPU {g.index} {g.uuid}" for g in devices)
                             for name, devices in self.devices.items())
            log(f"{self.namespace}/{self.name}: allocated {text}")
            self.event("Normal", "AllocatedDevices", f"{gpus.RESOURCE} allocated: {text}")

    def setup(self) -> None:
        try:
            self.admit_devices()
        except gpus.AllocationError as err:  # the kubelet's admission failure: the pod fails, it is not retried
            self.phase = "Failed"
            self.event("Warning", "UnexpectedAdmissionError", f"Allocate failed due to {err}, which is unexpected")
            self.publish()
            raise
        (self.dir / "volumes").mkdir(parents=True, exist_ok=True)
        self.ip = self.kubelet.allocate_ip()
        network.add_pod_netns(self.netns, self.kubelet.bridge, self.ip, self.kubelet.network.prefixlen)
        self.sandbox = True
        hostname = self.pod["spec"].get("hostname") or self.name[:63]
        (self.dir / "hostname").write_text(hostname + "\n")
        search = f"{self.namespace}.svc.{CLUSTER_DOMAIN} svc.{CLUSTER_DOMAIN} {CLUSTER_DOMAIN}"
        # Nothing answers on the pod's own loopback: every DNS query fails at once, inside the pod.
        (self.dir / "resolv.conf").write_text(f"nameserver 127.0.0.1\nsearch {search}\noptions ndots:5\n")
        (self.dir / "hosts").write_text("")
        self.write_hosts()
        for status in (self.pod["spec"].get("initContainers") or []):
            self.init_statuses[status["name"]] = waiting_status(status, "PodInitializing")
        for container in self.pod["spec"]["containers"]:
            reason = "PodInitializing" if self.pod["spec"].get("initContainers") else "ContainerCreating"
            self.statuses[container["name"]] = waiting_status(container, reason)
        self.publish()
        self.kwok_objects()

    def teardown(self) -> None:
        self.stop_containers()
        for runner in self.runners:
            if runner.is_alive():
                runner.join(timeout=self.grace() + 15)
        if self.sandbox:
            for pid in network.netns_pids(self.netns):  # anything a container left behind in the pod
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
            network.delete_pod_netns(self.netns)
        self.kubelet.release_ip(self.ip)
        allocator = self.kubelet.allocators.get(self.pod["spec"]["nodeName"])
        if allocator is not None and allocator.release(f"{self.namespace}/{self.name}/"):
            log(f"{self.namespace}/{self.name}: released its GPUs")
        for sub in ("volumes", "containers"):
            shutil.rmtree(self.dir / sub, ignore_errors=True)
        try:  # the kubelet's last word: the pod object goes once its containers are gone
            self.kube.request("DELETE", f"/api/v1/namespaces/{self.namespace}/pods/{self.name}",
                              body={"gracePeriodSeconds": 0, "preconditions": {"uid": self.uid}})
        except ApiError as err:
            if err.status not in (404, 409):
                log(f"{self.namespace}/{self.name}: delete: {err}")
        except Exception as exc:  # noqa: BLE001
            log(f"{self.namespace}/{self.name}: delete: {exc}")
        self.kubelet.forget(self.uid)

    def grace(self) -> float:
        meta, spec = self.pod["metadata"], self.pod["spec"]
        value = meta.get("deletionGracePeriodSeconds", spec.get("terminationGracePeriodSeconds", DEFAULT_GRACE_S))
        return float(value if value is not None else DEFAULT_GRACE_S)

    # -- hosts, kwok objects, volumes -----------------------------------------------------------------

    def write_hosts(self) -> None:
        if self.ip is None:
            return
        hostname = (self.dir / "hostname").read_text().strip()
        lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback", f"{self.ip}\t{hostname}",
                 "# Services: no DNS server here, each name maps to its endpoints (kuberay-llm local kubelet)",
                 *self.kubelet.hosts_entries(self.namespace)]
        text = "\n".join(lines) + "\n"
        if text != self.hosts_text:
            with open(self.dir / "hosts", "r+") as handle:  # in place: containers see it through a bind mount
                handle.write(text)
                handle.truncate()
            self.hosts_text = text

    def owner(self) -> list[dict]:
        return [{"apiVersion": "v1", "kind": "Pod", "name": self.name, "uid": self.uid}]

    def log_path(self, container: str, previous: bool = False) -> Path:
        return self.dir / "logs" / container / ("previous.log" if previous else "current.log")

    def kwok_objects(self) -> None:
        """kwok serves `kubectl logs` and `kubectl port-forward` for the pod from these."""
        spec = self.pod["spec"]
        names = [c["name"] for c in (spec.get("initContainers") or []) + spec["containers"]]
        logs = {"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Logs",
                "metadata": {"name": self.name, "namespace": self.namespace, "ownerReferences": self.owner()},
                "spec": {"logs": [{"containers": [n], "logsFile": str(self.log_path(n)),
                                   "previousLogsFile": str(self.log_path(n, previous=True)), "follow": True}
                                  for n in names]}}
        self.forwarded = self.declared_ports()
        forward = {"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "PortForward",
                   "metadata": {"name": self.name, "namespace": self.namespace, "ownerReferences": self.owner()},
                   "spec": self.forward_spec(self.forwarded)}
        for name in names:
            self.log_path(name).parent.mkdir(parents=True, exist_ok=True)
            self.log_path(name).touch()
        for obj, plural in ((logs, "logs"), (forward, "portforwards")):
            path = f"/apis/kwok.x-k8s.io/v1alpha1/namespaces/{self.namespace}/{plural}"
            try:
                self.kube.request("POST", path, body=obj)
            except ApiError as err:
                if err.status != 409:
                    raise

    def declared_ports(self) -> set[int]:
        return {int(p["containerPort"]) for c in self.pod["spec"]["containers"] for p in c.get("ports") or []}

    def forward_spec(self, ports: set[int]) -> dict:
        return {"forwards": [{"ports": [p], "target": {"port": p, "address": self.ip}} for p in sorted(ports)]}

    def update_forwards(self, services: list[dict]) -> None:
        """Forward the declared ports plus every port a Service selecting the pod targets (KubeRay's serve-svc
        sends 8000 to workers that do not declare it): kwok forwards only the ports its PortForward lists."""
        if self.ip is None or not hasattr(self, "forwarded"):
            return
        labels = self.pod["metadata"].get("labels") or {}
        ports = set(self.declared_ports())
        for service in services:
            spec = service.get("spec") or {}
            selector = spec.get("selector") or {}
            if service["metadata"]["namespace"] != self.namespace or not selector or \
                    any(labels.get(k) != v for k, v in selector.items()):
                continue
            for port in spec.get("ports") or []:
                target = port.get("targetPort", port.get("port"))
                if isinstance(target, int) or str(target).isdigit():
                    ports.add(int(target))
        if ports == self.forwarded:
            return
        try:
            self.kube.request("PATCH", f"/apis/kwok.x-k8s.io/v1alpha1/namespaces/{self.namespace}/portforwards/"
                              f"{self.name}", body={"spec": self.forward_spec(ports)},
                              content_type="application/merge-patch+json")
            self.forwarded = ports
        except Exception as exc:  # noqa: BLE001 - retried on the next refresh
            log(f"{self.namespace}/{self.name}: port-forward update: {exc}")

    def mount_volumes(self) -> None:
        """Materialize each volume under the pod directory; unsupported kinds fail the pod's start, named."""
        for volume in self.pod["spec"].get("volumes") or []:
            name = volume["name"]
            target = self.dir / "volumes" / name
            target.mkdir(parents=True, exist_ok=True)
            if "emptyDir" in volume:
                empty = volume["emptyDir"] or {}
                size = str(int(parse_quantity(empty["sizeLimit"]))) if empty.get("sizeLimit") else "50%"
                self.volumes[name] = {"dir": str(target), "tmpfs": size if empty.get("medium") == "Memory" else None}
                continue
            if "hostPath" in volume:  # this machine is the node: its path, as a kubelet binds it
                host = volume["hostPath"]
                kind = host.get("type") or ""
                if kind == "DirectoryOrCreate":
                    Path(host["path"]).mkdir(parents=True, exist_ok=True)
                elif kind == "Directory" and not Path(host["path"]).is_dir():
                    raise containers.ConfigError(f'MountVolume.SetUp failed for volume "{name}" : hostPath type '
                                                 f'check failed: {host["path"]} is not a directory')
                elif kind not in ("", "Directory"):
                    raise containers.ConfigError(f'volume "{name}": hostPath type {kind} is not supported by the '
                                                 "local kubelet (Directory, DirectoryOrCreate and unset are)")
                target.rmdir()
                self.volumes[name] = {"dir": host["path"], "tmpfs": None}
                continue
            files: dict[str, str] = {}
            if "configMap" in volume or "secret" in volume:
                files = self.source_files(volume)
            elif "downwardAPI" in volume:
                files = self.downward_files(volume["downwardAPI"].get("items") or [])
            elif "projected" in volume:
                for source in volume["projected"].get("sources") or []:
                    if "serviceAccountToken" in source:
                        sat = source["serviceAccountToken"]
                        files[sat["path"]] = self.token(sat)
                    elif "downwardAPI" in source:
                        files.update(self.downward_files(source["downwardAPI"].get("items") or []))
                    else:
                        files.update(self.source_files(source))
            else:
                kind = next((k for k in volume if k != "name"), "unknown")
                raise containers.ConfigError(f'volume "{name}": {kind} volumes are not supported by the local '
                                             "kubelet (emptyDir, hostPath, configMap, secret, downwardAPI and projected are)")
            for rel, content in files.items():
                path = target / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(content)
            self.volumes[name] = {"dir": str(target), "tmpfs": None}

    def source_files(self, source: dict) -> dict[str, str]:
        kind = "ConfigMap" if "configMap" in source else "Secret"
        ref = source.get("configMap") or source.get("secret") or {}
        name = ref.get("name") or ref.get("secretName")
        data = self.kubelet.lookup(self.namespace, kind, name)
        if data is None:
            if ref.get("optional"):
                return {}
            raise containers.ConfigError(f'MountVolume.SetUp failed: {kind.lower()} "{name}" not found')
        items = ref.get("items")
        return {i["path"]: data[i["key"]] for i in items if i["key"] in data} if items else data

    def downward_files(self, items: list[dict]) -> dict[str, str]:
        return {i["path"]: containers.field_value(self.pod, i["fieldRef"]["fieldPath"])
                for i in items if "fieldRef" in i}

    def token(self, projection: dict) -> str:
        account = self.pod["spec"].get("serviceAccountName") or "default"
        spec = {"expirationSeconds": projection.get("expirationSeconds", 3607),
                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": self.name, "uid": self.uid}}
        if projection.get("audience"):
            spec["audiences"] = [projection["audience"]]
        response = self.kube.request(
            "POST", f"/api/v1/namespaces/{self.namespace}/serviceaccounts/{account}/token",
            body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec})
        return response["status"]["token"]

    # -- containers -----------------------------------------------------------------------------------

    def container_spec(self, container: dict) -> dict:
        base = {"PATH": f"{containers.venv_bin()}:{containers.SYSTEM_PATH}",
                "HOME": str(self.dir / "containers" / container["name"] / "home"),
                "HOSTNAME": (self.dir / "hostname").read_text().strip(),
                "KUBERNETES_SERVICE_HOST": self.kubelet.host_ip,
                "KUBERNETES_SERVICE_PORT": str(self.kubelet.api_port),
                "KUBERNETES_PORT": f"tcp://{self.kubelet.host_ip}:{self.kubelet.api_port}"}
        env = containers.resolve_env(self.pod, container, lambda k, n: self.kubelet.lookup(self.namespace, k, n),
                                     self.node["capacity"], base)
        if self.kubelet.allocators:  # after the pod's own env, as the runtime's device hook comes last
            env.update(gpus.container_env(self.devices.get(container["name"], [])))
        argv = containers.argv_of(container, env)
        root = self.dir / "containers" / container["name"]
        for sub in ("tmp", "scratch", "home"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        mounts = []
        for mount in container.get("volumeMounts") or []:
            volume = self.volumes.get(mount["name"])
            if volume is None:
                raise containers.ConfigError(f'volumeMount "{mount["name"]}" names no volume of the pod')
            source = Path(volume["dir"], mount.get("subPath", ""))
            mounts.append({"source": str(source), "target": mount["mountPath"],
                           "readOnly": bool(mount.get("readOnly")), "tmpfs": volume["tmpfs"],
                           "directory": not source.is_file()})
        return {"hostname": base["HOSTNAME"], "tmp": str(root / "tmp"), "scratch": str(root / "scratch"),
                "files": {"/etc/hosts": str(self.dir / "hosts"), "/etc/resolv.conf": str(self.dir / "resolv.conf"),
                          "/etc/hostname": str(self.dir / "hostname")},
                "mounts": mounts, "workingDir": container.get("workingDir"), "argv": argv, "env": env}

    def run_init_containers(self) -> bool:
        for container in self.pod["spec"].get("initContainers") or []:
            runner = ContainerRunner(self, container, init=True)
            self.runners.append(runner)
            runner.run()  # in this thread: init containers run one after another
            if self.deleting.is_set() or runner.final_code != 0:
                return False
        self.initialized = True
        self.publish()
        return True

    def run_containers(self) -> None:
        for container in self.pod["spec"]["containers"]:
            runner = ContainerRunner(self, container, init=False)
            self.runners.append(runner)
            runner.start()

    # -- status ---------------------------------------------------------------------------------------

    def set_condition(self, kind: str, value: bool) -> None:
        status = "True" if value else "False"
        if self.conditions.get(kind, ("", ""))[0] != status:
            self.conditions[kind] = (status, containers.now_rfc3339())

    def publish(self) -> None:
        with self.lock:
            spec = self.pod["spec"]
            names = [c["name"] for c in spec["containers"]]
            all_ready = all(self.ready.get(n) for n in names)
            self.set_condition("PodReadyToStartContainers", self.sandbox)
            self.set_condition("Initialized", self.initialized or not spec.get("initContainers"))
            self.set_condition("ContainersReady", all_ready)
            self.set_condition("Ready", all_ready)
            mains = [r for r in self.runners if not r.init]
            init_failed = any(r.init and r.final and r.final_code != 0 for r in self.runners)
            if init_failed:
                self.phase = "Failed"
            elif mains and len(mains) == len(names) and all(r.final for r in mains) and not self.deleting.is_set():
                self.phase = "Succeeded" if all(r.final_code == 0 for r in mains) else "Failed"
            elif mains:
                self.phase = "Running"
            scheduled = next((c for c in (self.pod.get("status") or {}).get("conditions") or []
                              if c["type"] == "PodScheduled"), None)
            conditions = [scheduled] if scheduled else []
            conditions += [{"type": k, "status": v, "lastTransitionTime": t} for k, (v, t) in self.conditions.items()]
            status = {"phase": self.phase, "conditions": conditions, "hostIP": self.node.get("ip", "127.0.0.1"),
                      "hostIPs": [{"ip": self.node.get("ip", "127.0.0.1")}], "startTime": self.start_time,
                      "containerStatuses": [self.statuses[n] for n in names if n in self.statuses]}
            if self.ip:
                status.update(podIP=self.ip, podIPs=[{"ip": self.ip}])
            if self.init_statuses:
                status["initContainerStatuses"] = list(self.init_statuses.values())
            text = json.dumps(status, sort_keys=True)
            if text == self.last_published:
                return
            try:
                self.kube.request("PATCH", f"/api/v1/namespaces/{self.namespace}/pods/{self.name}/status",
                                  body={"status": status}, content_type="application/merge-patch+json")
                self.last_published = text
            except ApiError as err:
                if err.status != 404:
                    log(f"{self.namespace}/{self.name}: status: {err}")
            except Exception as exc:  # noqa: BLE001 - the next change publishes again
                log(f"{self.namespace}/{self.name}: status: {exc}")

    def event(self, kind: str, reason: str, message: str, container: str | None = None) -> None:
        """A core/v1 Event from the kubelet; a repeat bumps the count, as the kubelet's recorder does."""
        field_path = f"spec.containers{{{container}}}" if container else ""
        key = (reason, message, field_path)
        now = containers.now_rfc3339()
        try:
            existing = self.events.get(key)
            if existing:
                existing["count"] += 1
                existing["lastTimestamp"] = now
                self.kube.request("PATCH", f"/api/v1/namespaces/{self.namespace}/events/{existing['metadata']['name']}",
                                  body={"count": existing["count"], "lastTimestamp": now},
                                  content_type="application/merge-patch+json")
                return
            body = {"apiVersion": "v1", "kind": "Event",
                    "metadata": {"name": f"{self.name}.{uuid.uuid4().hex[:16]}", "namespace": self.namespace},
                    "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": self.name,
                                       "namespace": self.namespace, "uid": self.uid, "fieldPath": field_path},
                    "reason": reason, "message": message, "type": kind, "count": 1,
                    "firstTimestamp": now, "lastTimestamp": now,
                    "source": {"component": "kubelet", "host": self.pod["spec"]["nodeName"]}}
            self.events[key] = self.kube.request("POST", f"/api/v1/namespaces/{self.namespace}/events", body=body)
        except Exception as exc:  # noqa: BLE001 - an event lost is not worth stopping the pod for
            log(f"{self.namespace}/{self.name}: event {reason}: {exc}")


def main(argv: list[str]) -> int:
    state_dir = Path(argv[0])
    state = json.loads((state_dir / "state.json").read_text())
    os.environ["KUBECONFIG"] = str(state_dir / "kubeconfig")
    kubelet = Kubelet(Kube.connect("default"), state, state_dir)
    log(f"local kubelet for node(s) {', '.join(kubelet.nodes)}: pod network {kubelet.network}, bridge {kubelet.bridge}")
    kubelet.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
