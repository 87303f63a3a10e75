"""Check 4f: Ray's resource accounting against the containers', and what an upgrade needs of the GPU pool.

What each Ray node advertises is decided by KubeRay v1.6.2 when it builds the pod
(ray-operator/controllers/ray/common/pod.go): a GPU or CPU key of the group's top-level `resources`
(updateRayStartParamsResources) wins, then rayStartParams `num-gpus` / `num-cpus` as written, and only where
neither is set the Ray container's (containers[0], utils.RayContainerIndex) limits: `num-cpus` from limits.cpu,
else requests.cpu (generateRayStartCommand), `num-gpus` from the first GPU limit (addWellKnownAcceleratorResources;
a GPU key ends in "gpu" or is a MIG slice: utils/resources.go IsGPUResourceKey). The container gets only its
limits from Kubernetes, so:
- Ray's `ray start` takes whole numbers for both (Ray 2.60.0 python/ray/scripts/scripts.py: `--num-cpus` and
  `--num-gpus` are click options of type=int): anything else and the node never starts (ERROR);
- more GPUs advertised than the container has: Ray places replicas on GPUs the pod does not have (ERROR); fewer:
  GPUs the pod holds that Ray never schedules (WARNING); more CPUs than the container's: throttled actors (WARNING);
- a placement bundle asking more GPUs than any worker pod advertises never fits (ERROR);
- a fractional GPU per engine (placement_group_config bundles GPU < 1; Ray 2.60 Serve LLM passes it to vLLM as
  VLLM_RAY_PER_WORKER_GPUS: ray/llm/_internal/serve/engines/vllm/vllm_models.py _detect_fractional_gpu_from_pg)
  lets Ray put floor(1/GPU) engines on one device, and each vLLM engine requires gpu_memory_utilization of the
  whole device to be free when it starts (vLLM 0.29 vllm/v1/worker/utils.py request_memory: "Free memory on
  device ... is less than desired GPU memory utilization"; the default is 0.92, vllm/config/cache.py) (ERROR);
- upgradeStrategy NewCluster (KubeRay's default when unset: rayservice_controller.go isZeroDowntimeUpgradeEnabled)
  keeps the old cluster serving until the new one is ready, so both hold GPUs at once (WARNING when two clusters
  at their minimum exceed what the worker groups can grow to, the pool the tier was sized for).
"""

from __future__ import annotations

import math
import re

from kuberay_llm.kubenames import quantity
from kuberay_llm.preflight.findings import ERROR, WARNING, Finding
from kuberay_llm.preflight.rayservice import GPU, RayGroup, RayServiceFacts, mapping

VLLM_DEFAULT_GPU_MEMORY_UTILIZATION = 0.92
_MIG = re.compile(r"nvidia\.com/mig-\d+g\.\d+gb$")


def is_gpu_key(name: str) -> bool:
    """KubeRay's utils.IsGPUResourceKey."""
    return name.endswith("gpu") or bool(_MIG.search(name))


def _ray_container(group: RayGroup) -> dict:
    return group.containers[0] if group.containers else {}


def _container_amount(group: RayGroup, cpu: bool) -> tuple[float | None, str]:
    """(what the Ray container gets, where that is written): GPUs from limits only, CPUs from limits else
    requests; None when the container does not say (Ray then detects the node's)."""
    resources = mapping(_ray_container(group).get("resources"))
    limits, requests = mapping(resources.get("limits")), mapping(resources.get("requests"))
    if cpu:
        for kind, table in (("limits", limits), ("requests", requests)):
            amount = quantity(table.get("cpu"))
            if amount:
                return float(amount), f"resources.{kind}.cpu"
        return None, ""
    gpus = sorted(k for k in limits if is_gpu_key(str(k)))
    if not gpus:
        return 0.0, f"resources.limits.{GPU}"
    amount = quantity(limits[gpus[0]])
    return (float(amount) if amount is not None else None), f"resources.limits.{gpus[0]}"


def _advertised(group: RayGroup, cpu: bool) -> tuple[str, str] | None:
    """(field, value as written) of what the group makes Ray advertise instead of the container's amount."""
    for key, value in mapping(group.raw.get("resources")).items():
        name = str(key).lower()
        if (name == "cpu") if cpu else is_gpu_key(name):
            return f"{group.path}.resources.{key}", str(value)
    param = "num-cpus" if cpu else "num-gpus"
    if param in group.ray_start_params:
        return f"{group.path}.rayStartParams.{param}", str(group.ray_start_params[param])
    return None


def _whole(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def advertised_gpus(group: RayGroup) -> int:
    """The GPUs Ray schedules on one pod of the group (KubeRay's order; 0 where it cannot be read)."""
    written = _advertised(group, cpu=False)
    if written is None:
        amount, _ = _container_amount(group, cpu=False)
        return int(amount or 0)
    field, value = written
    amount = quantity(value) if ".resources." in field else _whole(value)
    if amount is None:  # not a number ray start takes (reported on its own): count what the container has
        amount, _ = _container_amount(group, cpu=False)
    return math.ceil(amount or 0)


def _group_findings(source, obj, group: RayGroup) -> list[Finding]:
    out = []
    label = "head" if group.path.endswith("headGroupSpec") else f"{group.name}"
    for cpu in (False, True):
        written = _advertised(group, cpu)
        if written is None:
            continue
        field, value = written
        param = "num-cpus" if cpu else "num-gpus"
        if field.endswith(f"rayStartParams.{param}"):
            setting = f"rayStartParams.{param}"
            number = _whole(value)
            if number is None:
                out.append(Finding(ERROR, source, obj, f"{field}={value}",
                                   f"ray start refuses it (Invalid value for '--{param}': '{value}' is not a valid "
                                   f"integer): the {label} pods' Ray never starts",
                                   "give a whole number, or remove it (KubeRay then takes the container's limit)"
                                   + ("; a fraction of a GPU per engine belongs in the serve config's "
                                      "placement_group_config bundles" if not cpu else "")))
                continue
        else:
            setting = field[len(group.path) + 1:]
            amount = quantity(value)
            if amount is None:
                continue  # the schema's quantity pattern reports it
            number = math.ceil(amount)
        has, where = _container_amount(group, cpu)
        if has is None:
            continue
        where = f"{group.path}.template.spec.containers[0].{where}"
        if not cpu and number > has:
            out.append(Finding(ERROR, source, obj, f"{field}={value}",
                               f"makes Ray advertise {number} GPUs on each {label} pod, but its Ray container gets "
                               f"{has:g} ({where}): Ray places replicas on GPUs the pod does not have, and their vLLM "
                               "engines find no CUDA device",
                               f"remove {setting} (KubeRay then takes the container's GPU limit) or set it to {has:g}"))
        elif not cpu and number < has and not group.path.endswith("headGroupSpec"):
            out.append(Finding(WARNING, source, obj, f"{field}={value}",
                               f"makes Ray schedule {number} of the {has:g} GPUs each {label} pod holds ({where}): "
                               f"{has - number:g} GPU{'s' if has - number != 1 else ''} per pod paid for and never used",
                               f"remove {setting} (KubeRay then takes the container's GPU limit) or lower the limit"))
        elif cpu and number > has:
            out.append(Finding(WARNING, source, obj, f"{field}={value}",
                               f"makes Ray schedule {number} CPUs of work on each {label} pod, but its Ray container "
                               f"gets {has:g} ({where}): the actors are throttled to {has:g}",
                               f"remove {setting} (KubeRay then takes the container's CPUs) or raise the container's "
                               "cpu"))
    return out


def rule_ray_node_resources(source, rs: RayServiceFacts, ctx) -> list[Finding]:
    """What each group's raylet advertises against its Ray container's limits."""
    obj = f"RayService/{rs.name}"
    return [f for group in rs.groups for f in _group_findings(source, obj, group)]


def _bundles(placement: dict) -> list[tuple[str, dict]]:
    per_worker = placement.get("bundle_per_worker")
    if isinstance(per_worker, dict):
        return [("placement_group_config.bundle_per_worker", per_worker)]
    bundles = placement.get("bundles")
    return [(f"placement_group_config.bundles[{i}]", b) for i, b in enumerate(bundles or [])
            if isinstance(b, dict)] if isinstance(bundles, list) else []


def rule_placement_gpus(source, rs: RayServiceFacts, ctx) -> list[Finding]:
    """Every bundle's GPUs fit one worker pod; a fractional GPU leaves each engine its share of the memory."""
    obj, out = f"RayService/{rs.name}", []
    most = max((advertised_gpus(w) for w in rs.workers), default=0)
    offered = sum(advertised_gpus(w) * w.max_replicas for w in rs.workers)
    for e in rs.llm_entries:
        if e.on_cpu:
            continue
        need = e.gpus_per_replica
        if offered < need <= rs.total_gpus:  # the containers hold enough: Ray is told otherwise
            told = [f for w in rs.gpu_workers for f in [_advertised(w, cpu=False)] if f]
            field = f"{told[0][0]}={told[0][1]}" if told else f"{e.path}.engine_kwargs.tensor_parallel_size"
            out.append(Finding(ERROR, source, obj, field,
                               f"Ray is told the worker groups have {offered} GPUs in all, but each replica of "
                               f"{e.model_id} places {need}: its placement group never fits and the replica waits "
                               "forever", "remove num-gpus from the GPU worker groups (KubeRay then takes the "
                               "containers' GPU limits)"))
            continue
        for where, bundle in _bundles(e.placement):
            gpus = bundle.get("GPU")
            if not isinstance(gpus, (int, float)) or isinstance(gpus, bool) or gpus <= 0:
                continue
            field = f"{e.path}.{where}.GPU={gpus:g}"
            if gpus > most:
                out.append(Finding(ERROR, source, obj, field,
                                   f"asks {gpus:g} GPUs on one node, but no worker pod advertises more than {most} "
                                   "(rayStartParams num-gpus, else the Ray container's GPU limit): the placement "
                                   "group never fits and the replica waits forever",
                                   f"ask at most {most} GPU{'s' if most != 1 else ''} per bundle (one bundle per GPU, as "
                                   "Ray Serve LLM's "
                                   "default is), or give the worker pods more GPUs"))
                continue
            if gpus >= 1:
                continue
            share = math.floor(1 / gpus + 1e-9)
            util = e.setting("gpu_memory_utilization", VLLM_DEFAULT_GPU_MEMORY_UTILIZATION)
            if share * util > 1:
                most_util = (math.floor(100 / share) - 5) / 100
                out.append(Finding(ERROR, source, obj, field,
                                   f"lets Ray place {share} vLLM engines on one GPU, but each requires "
                                   f"gpu_memory_utilization {util:g} of the whole GPU's memory ({share} × {util:g} > "
                                   "1): the next engine on that GPU fails at start (vLLM: Free memory on device ... "
                                   "is less than desired GPU memory utilization)",
                                   f"set engine_kwargs.gpu_memory_utilization to at most {most_util:g} (1/{share} less "
                                   "each engine's CUDA context), or give each engine a whole GPU (GPU: 1)"))
    return out


def _min_replicas(e) -> int:
    low = e.autoscaling.get("min_replicas")
    if isinstance(low, int) and not isinstance(low, bool):
        return low
    count = e.deployment.get("num_replicas")
    return count if isinstance(count, int) and not isinstance(count, bool) else 1


def rule_upgrade_needs_two_clusters(source, rs: RayServiceFacts, ctx) -> list[Finding]:
    """NewCluster holds the GPUs of two clusters during an upgrade: warn where two minimal clusters do not fit
    within what the worker groups can grow to."""
    strategy = mapping(rs.spec.get("upgradeStrategy")).get("type")
    if strategy not in (None, "NewCluster") or not rs.gpu_workers:
        return []
    total = rs.total_gpus
    workers_min = sum(w.gpus_per_pod * (w.min_replicas or 0) for w in rs.gpu_workers)
    serve_min = sum(_min_replicas(e) * e.gpus_per_replica * e.setting("data_parallel_size", 1)
                    for e in rs.llm_entries if not e.on_cpu)
    need = max(workers_min, serve_min)
    if need == 0 or 2 * need <= total:
        return []
    shown = "NewCluster" if strategy else "(unset: NewCluster)"
    return [Finding(WARNING, source, f"RayService/{rs.name}", f"spec.upgradeStrategy.type={shown}",
                    f"an upgrade of rayClusterConfig starts a second RayCluster and keeps this one serving until the "
                    f"new one is ready: {2 * need} GPUs at once ({need} per cluster at its minimum), but the worker "
                    f"groups grow to {total}: in a GPU pool of that size the new cluster stays pending and the "
                    "upgrade never completes",
                    f"set upgradeStrategy.type: None (serve-config changes still apply in place; cluster changes "
                    f"need the RayService re-created), or size the GPU pool for {2 * need} GPUs")]


RULES = [rule_ray_node_resources, rule_placement_gpus, rule_upgrade_needs_two_clusters]
