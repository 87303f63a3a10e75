"""Facts of one rendered RayService that the checks reason about: its serve config and its GPU groups."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import yaml

GPU = "nvidia.com/gpu"


@dataclass
class LLMEntry:
    """One entry of an application's args.llm_configs, with the path error messages use."""

    path: str  # `serveConfigV2 llm_configs[0]` (or `serveConfigV2 applications[1].args.llm_configs[0]`)
    config: dict

    @property
    def engine(self) -> dict:
        return self.config.get("engine_kwargs") or {}

    @property
    def tp(self) -> int:
        return _int(self.engine.get("tensor_parallel_size", 1) or 1) or 1

    @property
    def pp(self) -> int:
        return _int(self.engine.get("pipeline_parallel_size", 1) or 1) or 1

    @property
    def on_cpu(self) -> bool:
        return (self.config.get("accelerator_config") or {}).get("kind") == "cpu"


@dataclass
class WorkerGroup:
    name: str
    gpus_per_pod: int
    max_replicas: int
    node_selector: dict
    advertised: dict  # Ray custom resources the group's raylets advertise


@dataclass
class RayServiceFacts:
    obj: dict
    name: str
    serve_config: dict | None = None
    serve_config_error: str = ""
    applications: list[dict] = field(default_factory=list)
    llm_entries: list[LLMEntry] = field(default_factory=list)
    workers: list[WorkerGroup] = field(default_factory=list)

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


def _int(value) -> int:
    """An int, or 0 for a value the schema check reports anyway."""
    try:
        return int(str(value))
    except ValueError:
        return 0


def _gpus(pod_spec: dict) -> int:
    total = 0
    for container in pod_spec.get("containers") or []:
        limits = (container.get("resources") or {}).get("limits") or {}
        total += _int(limits.get(GPU, 0))
    return total


def _advertised(group: dict) -> dict:
    resources = dict(group.get("resources") or {})
    raw = (group.get("rayStartParams") or {}).get("resources")
    if raw:  # rayStartParams.resources is a JSON object inside a (sometimes quoted) string
        try:
            resources.update(json.loads(raw.strip().strip("'\"").replace('\\"', '"')))
        except (ValueError, AttributeError):
            pass
    return resources


def facts(obj: dict) -> RayServiceFacts:
    spec = obj.get("spec") or {}
    out = RayServiceFacts(obj=obj, name=(obj.get("metadata") or {}).get("name", "?"))
    raw = spec.get("serveConfigV2")
    try:
        parsed = yaml.safe_load(raw) if isinstance(raw, str) else None
    except yaml.YAMLError as exc:
        out.serve_config_error = f"is not valid YAML: {exc}".replace("\n", " ")
        parsed = None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("applications"), list):
        out.serve_config_error = out.serve_config_error or "has no `applications:` list"
    else:
        out.serve_config = parsed
        out.applications = parsed["applications"]
        single = len(out.applications) == 1
        for a, app in enumerate(out.applications):
            configs = ((app or {}).get("args") or {}).get("llm_configs") or []
            for i, cfg in enumerate(configs):
                if isinstance(cfg, dict):
                    prefix = "serveConfigV2 " + ("" if single else f"applications[{a}].args.")
                    out.llm_entries.append(LLMEntry(f"{prefix}llm_configs[{i}]", cfg))
    for group in (spec.get("rayClusterConfig") or {}).get("workerGroupSpecs") or []:
        pod = (group.get("template") or {}).get("spec") or {}
        out.workers.append(WorkerGroup(
            name=group.get("groupName", "?"),
            gpus_per_pod=_gpus(pod),
            max_replicas=_int(group.get("maxReplicas", group.get("replicas", 1))),
            node_selector=pod.get("nodeSelector") or {},
            advertised=_advertised(group),
        ))
    return out
