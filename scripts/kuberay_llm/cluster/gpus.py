"""This machine's NVIDIA GPUs as a Kubernetes node sees them: the device plugin's resource, GPU feature
discovery's labels, and one device list per container.

On a machine with NVIDIA GPUs, `kuberay-llm cluster up` adds a `runs: ray` node (GPU_NODE) whose
`nvidia.com/gpu` capacity is the number of GPUs `nvidia-smi` lists, labelled as NVIDIA's GPU feature
discovery labels a node and tainted as GPU node pools are, so the real kube-scheduler places GPU workers
there by their requests, selectors and tolerations. The local kubelet then does the device plugin's part
(Allocator): a container that requests N GPUs gets N devices of its own, tracked per pod and freed when the
pod ends; a container that requests none gets none, as under the NVIDIA container runtime, where a container
without devices sees no GPU (Ray on a head would otherwise advertise the node's GPUs).

Without a container runtime the devices cannot be hidden from a process, only named: the container gets the
device plugin's NVIDIA_VISIBLE_DEVICES (the GPUs' UUIDs, `void` for none) and CUDA_VISIBLE_DEVICES (their
indices in nvidia-smi's PCI-bus order; empty for none), which is what CUDA, Ray and vLLM read.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from dataclasses import asdict, dataclass

from kuberay_llm import settings
from kuberay_llm.errors import UserError

RESOURCE = "nvidia.com/gpu"
GPU_NODE = "gpu-local"
TAINT = {"key": RESOURCE, "value": "present", "effect": "NoSchedule"}  # as data/local-cluster.yaml's GPU pools
QUERY = "index,uuid,name,memory.total,compute_cap"
NVIDIA_SMI_TIMEOUT_S = 30
# k8s-device-plugin internal/lm/resource.go getArchFamily: compute capability major -> family label.
FAMILIES = {1: "tesla", 2: "fermi", 3: "kepler", 5: "maxwell", 6: "pascal", 8: "ampere", 9: "hopper"}


@dataclass(frozen=True)
class Gpu:
    index: int
    uuid: str
    name: str  # as NVML names it: "NVIDIA H100 80GB HBM3"
    memory_mib: int
    compute_cap: str  # "9.0"


def discover(nvidia_smi: str | None = None) -> list[Gpu]:
    """The GPUs `nvidia-smi` lists (none where it is not installed). KUBERAY_LLM_NVIDIA_SMI names another binary."""
    binary = nvidia_smi or settings.nvidia_smi() or shutil.which("nvidia-smi")
    if not binary:
        return []
    try:
        proc = subprocess.run([binary, f"--query-gpu={QUERY}", "--format=csv,noheader,nounits"], capture_output=True,
                              text=True, timeout=NVIDIA_SMI_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UserError(f"{binary} --query-gpu failed: {exc}; fix the driver or set KUBERAY_LLM_GPUS=none to start "
                        "the local cluster without its GPU node") from None
    if proc.returncode != 0:
        raise UserError(f"{binary} --query-gpu exited {proc.returncode}: {(proc.stderr or proc.stdout).strip()[:300]}; "
                        "fix the driver or set KUBERAY_LLM_GPUS=none to start the local cluster without its GPU node")
    gpus = []
    for line in proc.stdout.splitlines():
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != 5:
            raise UserError(f"{binary} printed {line!r}: expected {QUERY}")
        index, uuid, name, memory, cap = fields
        gpus.append(Gpu(int(index), uuid, name, int(float(memory)), cap))
    return gpus


def product_label(name: str) -> str:
    """GPU feature discovery's nvidia.com/gpu.product: the NVML name, spaces as dashes (k8s-device-plugin
    internal/lm/resource.go productLabel): "NVIDIA H100 80GB HBM3" -> "NVIDIA-H100-80GB-HBM3"."""
    return name.strip().replace(" ", "-")


def node_labels(gpus: list[Gpu]) -> dict[str, str]:
    """The labels GPU feature discovery writes for full GPUs (resource.go NewGPUResourceLabeler), for the first
    GPU's model (nodes of one model, as cloud node pools are)."""
    first = gpus[0]
    major, _, minor = first.compute_cap.partition(".")
    labels = {"nvidia.com/gpu.present": "true", "nvidia.com/gpu.product": product_label(first.name),
              "nvidia.com/gpu.count": str(len(gpus)), "nvidia.com/gpu.memory": str(first.memory_mib),
              "nvidia.com/gpu.replicas": "1"}
    if major.isdigit() and int(major) > 0:
        family = FAMILIES.get(int(major), "undefined")
        if int(major) == 7:
            family = "volta" if minor.isdigit() and int(minor) < 5 else "turing"
        labels.update({"nvidia.com/gpu.family": family, "nvidia.com/gpu.compute.major": major,
                       "nvidia.com/gpu.compute.minor": minor or "0"})
    return labels


def machine_capacity() -> dict[str, str]:
    """This machine's CPUs and memory, as a kubelet registers them (no reservations)."""
    mem_kib = next((int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal:")), 0)
    return {"cpu": str(os.cpu_count() or 1), "memory": f"{mem_kib}Ki"}


def gpu_node(gpus: list[Gpu], zone_labels: dict[str, str], ip: str) -> dict:
    """The `runs: ray` node of this machine's GPUs, in controlplane.node_objects' shape."""
    return {"name": GPU_NODE, "runs": "ray", "ip": ip,
            "capacity": {**machine_capacity(), "ephemeral-storage": "1Ti", "pods": "110", RESOURCE: str(len(gpus))},
            "labels": {"kubernetes.io/hostname": GPU_NODE, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                       "kuberay-llm.local/runs": "ray", "node.kubernetes.io/instance-type": "local-gpu",
                       **zone_labels, **node_labels(gpus)},
            "taints": [TAINT], "gpus": [asdict(g) for g in gpus]}


def requested(container: dict) -> int:
    """GPUs a container asks for. Extended resources are limits (a request must equal its limit)."""
    resources = container.get("resources") or {}
    value = (resources.get("limits") or {}).get(RESOURCE, (resources.get("requests") or {}).get(RESOURCE, 0))
    return int(str(value))


class Allocator:
    """The device plugin's bookkeeping for one node: which pod holds which GPU."""

    def __init__(self, gpus: list[dict]):
        self.gpus = [Gpu(**g) for g in gpus]
        self.holders: dict[str, str] = {}  # uuid -> "namespace/pod/container"
        self.lock = threading.Lock()

    def allocate(self, owner: str, count: int) -> list[Gpu]:
        """`count` free GPUs for `owner` ("ns/pod/container"), lowest index first; the same ones again for an owner
        that holds them (a restarted container keeps its devices, as with the device plugin's checkpoint)."""
        with self.lock:
            held = [g for g in self.gpus if self.holders.get(g.uuid) == owner]
            if len(held) >= count:
                return held[:count]
            free = [g for g in self.gpus if g.uuid not in self.holders]
            if len(free) < count - len(held):
                busy = ", ".join(f"{g.index} ({self.holders[g.uuid]})" for g in self.gpus if g.uuid in self.holders)
                raise AllocationError(f"{owner} requests {count} {RESOURCE} but only {len(free)} of "
                                      f"{len(self.gpus)} are free (held: {busy or 'none'})")
            chosen = held + free[:count - len(held)]
            for gpu in chosen:
                self.holders[gpu.uuid] = owner
            return chosen

    def release(self, pod_prefix: str) -> list[Gpu]:
        """Free every GPU held by a container of the pod `pod_prefix` ("ns/pod/")."""
        with self.lock:
            freed = [g for g in self.gpus if self.holders.get(g.uuid, "").startswith(pod_prefix)]
            for gpu in freed:
                del self.holders[gpu.uuid]
            return freed


class AllocationError(Exception):
    """The kubelet's UnexpectedAdmissionError: the node has fewer free devices than the pod asks for."""


def container_env(devices: list[Gpu]) -> dict[str, str]:
    """What the device plugin and the NVIDIA runtime give a container with these devices (none: no GPU)."""
    if not devices:
        return {"NVIDIA_VISIBLE_DEVICES": "void", "CUDA_VISIBLE_DEVICES": ""}
    return {"NVIDIA_VISIBLE_DEVICES": ",".join(g.uuid for g in devices),
            "CUDA_VISIBLE_DEVICES": ",".join(str(g.index) for g in devices), "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
