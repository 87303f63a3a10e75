"""Facts of one rendered RayService that the checks reason about: its serve config and its Ray groups.

The serve config comes from the one serve-config model (kuberay_llm.serveconfig). The cluster side is read
only with total accessors (a value of the wrong type reads as absent); the validator runs the rules that
read it only on an object the strict schema accepted, so they reason on the CRD's types.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from kuberay_llm import serveconfig
from kuberay_llm.kubenames import quantity
from kuberay_llm.serveconfig import LLMEntry, ServeConfig, ServeConfigError

GPU = "nvidia.com/gpu"

__all__ = ["GPU", "LLMEntry", "RayGroup", "RayServiceFacts", "WorkerGroup", "facts"]


def mapping(value) -> dict:
    return value if isinstance(value, dict) else {}


def items(value) -> list:
    return value if isinstance(value, list) else []


def whole(value) -> int:
    """A whole number from an int or a quantity string ("8"), else 0."""
    amount = quantity(value)
    return int(amount) if amount is not None and amount == int(amount) else 0


@dataclass
class RayGroup:
    """The head group or one worker group, with the path error messages use."""

    path: str  # `spec.rayClusterConfig.headGroupSpec` / `spec.rayClusterConfig.workerGroupSpecs[0]`
    raw: dict

    @property
    def name(self) -> str:
        return str(self.raw.get("groupName") or ("head" if self.path.endswith("headGroupSpec") else "?"))

    @property
    def template(self) -> dict:
        return mapping(self.raw.get("template"))

    @property
    def pod_spec(self) -> dict:
        return mapping(self.template.get("spec"))

    @property
    def containers(self) -> list[dict]:
        return [c for c in items(self.pod_spec.get("containers")) if isinstance(c, dict)]

    @property
    def ray_start_params(self) -> dict:
        return mapping(self.raw.get("rayStartParams"))


@dataclass
class WorkerGroup(RayGroup):
    @property
    def gpus_per_pod(self) -> int:
        return sum(whole(mapping(mapping(c.get("resources")).get("limits")).get(GPU, 0)) for c in self.containers)

    @property
    def min_replicas(self) -> int | None:
        value = self.raw.get("minReplicas")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    @property
    def max_replicas(self) -> int:
        """The most pods this group can grow to (maxReplicas, else replicas, else 1)."""
        for key in ("maxReplicas", "replicas"):
            value = self.raw.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        return 1

    @property
    def node_selector(self) -> dict:
        return mapping(self.pod_spec.get("nodeSelector"))

    @property
    def advertised(self) -> dict:
        """Ray custom resources the group's raylets advertise (`resources`, or rayStartParams.resources: a JSON
        object inside a sometimes quoted string)."""
        resources = dict(mapping(self.raw.get("resources")))
        raw = self.ray_start_params.get("resources")
        if isinstance(raw, str) and raw.strip():
            try:
                parsed = json.loads(raw.strip().strip("'\"").replace('\\"', '"'))
            except ValueError:
                parsed = None
            resources.update(mapping(parsed))
        return resources


@dataclass
class RayServiceFacts:
    obj: dict
    name: str
    serve: ServeConfig | None = None
    serve_config_error: str = ""
    serve_config_error_field: str = "spec.serveConfigV2"
    head: RayGroup | None = None
    workers: list[WorkerGroup] = field(default_factory=list)

    # --- the serve config, as the rules (and images.py / import_paths.py) read it -----------------------
    @property
    def serve_config(self) -> dict | None:
        return self.serve.data if self.serve else None

    @property
    def applications(self) -> list:
        """Each application as written (a mapping unless the config is broken)."""
        return [app.raw for app in self.serve.applications] if self.serve else []

    @property
    def llm_entries(self) -> list[LLMEntry]:
        return self.serve.llm_entries if self.serve else []

    # --- the cluster ------------------------------------------------------------------------------------
    @property
    def spec(self) -> dict:
        return mapping(self.obj.get("spec"))

    @property
    def cluster(self) -> dict:
        return mapping(self.spec.get("rayClusterConfig"))

    @property
    def metadata(self) -> dict:
        return mapping(self.obj.get("metadata"))

    @property
    def groups(self) -> list[RayGroup]:
        return ([self.head] if self.head else []) + list(self.workers)

    @property
    def gpu_workers(self) -> list[WorkerGroup]:
        return [w for w in self.workers if w.gpus_per_pod > 0]

    @property
    def max_gpus_per_pod(self) -> int:
        return max((w.gpus_per_pod for w in self.workers), default=0)

    @property
    def total_gpus(self) -> int:
        """GPUs the worker groups can grow to: GPUs per pod × maxReplicas, summed."""
        return sum(w.gpus_per_pod * w.max_replicas for w in self.workers)


def facts(obj: dict) -> RayServiceFacts:
    name = mapping(obj.get("metadata")).get("name")
    out = RayServiceFacts(obj=obj, name=name if isinstance(name, str) and name else "?")
    try:
        out.serve = serveconfig.of_rayservice(obj)
    except ServeConfigError as err:
        out.serve_config_error, out.serve_config_error_field = str(err), err.field
    cluster = out.cluster
    head = cluster.get("headGroupSpec")
    if isinstance(head, dict):
        out.head = RayGroup("spec.rayClusterConfig.headGroupSpec", head)
    for i, group in enumerate(items(cluster.get("workerGroupSpecs"))):
        if isinstance(group, dict):
            out.workers.append(WorkerGroup(f"spec.rayClusterConfig.workerGroupSpecs[{i}]", group))
    return out
