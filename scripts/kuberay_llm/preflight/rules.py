"""Check 4: cross-field rules that a GPU cluster would otherwise reveal an hour and a bill later.

Each rule is a function `(source, rs, ctx) -> list[Finding]` registered in RULES with what it reads: the
cluster side of the RayService (CLUSTER), its serve config (SERVE) or both. `check` runs a rule only when
every part it reads passed the checks before it (the strict schema for the cluster, Ray's schema classes and
the typed serve-config model for the serve config): no rule ever reasons on a value of the wrong type.
tests/test_preflight*.py has a broken copy of a real overlay for each rule.
"""

from __future__ import annotations

import re

from kuberay_llm.preflight import capacity, deployment_advice, kuberay_rules, model_facts, pod_rules, serving_patterns
from kuberay_llm.preflight import cold_start, gated_models, hardening, ray_resources, ray_start, runtime_envs
from kuberay_llm.preflight import serve_ports, vllm_configs
from kuberay_llm.preflight.findings import ERROR, Finding
from kuberay_llm.preflight.images import parse as parse_image
from kuberay_llm.preflight.images import ray_containers, rule_ray_images
from kuberay_llm.preflight.rayservice import GPU, LLMEntry, RayServiceFacts

# Node labels that say which GPU a node has, and how Ray names that GPU (the `accelerator_type:<X>`
# resource it advertises). GFD's nvidia.com/gpu.product values are mapped with Ray's own name parser.
GKE_ACCELERATOR_LABEL = "cloud.google.com/gke-accelerator"
GFD_PRODUCT_LABEL = "nvidia.com/gpu.product"
GKE_ACCELERATORS = {
    "nvidia-h100-80gb": "H100",
    "nvidia-h100-mega-80gb": "H100",
    "nvidia-h200-141gb": "H200",
    "nvidia-b200": "B200",
    "nvidia-tesla-a100": "A100",
    "nvidia-a100-80gb": "A100",
    "nvidia-l4": "L4",
    "nvidia-tesla-t4": "T4",
    "nvidia-tesla-v100": "V100",
}
SECRET_ENV_NAME = re.compile(r"(TOKEN|SECRET|PASSWORD|API_KEY|ACCESS_KEY)", re.I)
SECRET_VALUE = re.compile(r"\b(hf_[A-Za-z0-9]{30,}|sk-[A-Za-z0-9_-]{20,})\b")


def ray_gpu_name(node_selector: dict) -> str | None:
    """The accelerator type Ray auto-detects on nodes this selector picks, or None if it picks no GPU model."""
    if GKE_ACCELERATOR_LABEL in node_selector:
        return GKE_ACCELERATORS.get(node_selector[GKE_ACCELERATOR_LABEL], node_selector[GKE_ACCELERATOR_LABEL])
    product = node_selector.get(GFD_PRODUCT_LABEL)
    if product:
        from ray._private.accelerators.nvidia_gpu import NvidiaGPUAcceleratorManager

        # GFD writes the CUDA device name with spaces as dashes: NVIDIA-A100-SXM4-40GB.
        return NvidiaGPUAcceleratorManager._gpu_name_to_accelerator_type(product.replace("-", " ", 1))
    return None


def _groups(rs: RayServiceFacts) -> str:
    return ", ".join(f"{w.name} offers {w.gpus_per_pod} {GPU} × {w.max_replicas} pod"
                     + ("s" if w.max_replicas != 1 else "") for w in rs.workers) or "no worker group"


def _gpu_entries(rs: RayServiceFacts) -> list[LLMEntry]:
    return [e for e in rs.llm_entries if not e.on_cpu]


def rule_parallelism_fits(source, rs, ctx) -> list[Finding]:
    """TP × PP GPUs per replica fit the GPU worker groups; a TP group fits in one pod."""
    out = []
    obj = f"RayService/{rs.name}"
    max_per_pod, total = rs.max_gpus_per_pod, rs.total_gpus
    for e in _gpu_entries(rs):
        need = e.tp * e.pp
        field = f"{e.path}.engine_kwargs." + ("tensor_parallel_size" if e.pp == 1 else "pipeline_parallel_size")
        value = e.tp if e.pp == 1 else e.pp
        if need > total:
            out.append(Finding(ERROR, source, obj, f"{field}={value}",
                               f"needs {need} GPUs per replica (tensor_parallel_size {e.tp} × "
                               f"pipeline_parallel_size {e.pp}), but worker group {_groups(rs)}",
                               f"give the worker group {need} {GPU} in total (GPUs per pod × maxReplicas) "
                               "or lower the parallel sizes"))
        elif e.tp > max_per_pod:
            out.append(Finding(ERROR, source, obj, f"{e.path}.engine_kwargs.tensor_parallel_size={e.tp}",
                               f"splits every layer over {e.tp} GPUs, but no worker pod has more than {max_per_pod} "
                               f"{GPU}: tensor parallelism across nodes is network-bound",
                               f"keep tensor_parallel_size ≤ GPUs per pod ({max_per_pod}) and span nodes with "
                               f"pipeline_parallel_size {need // max_per_pod if max_per_pod else need}"))
    return out


def rule_serve_replicas_fit(source, rs, ctx) -> list[Finding]:
    """Serve's max_replicas × GPUs per replica ≤ what the worker groups can grow to."""
    out = []
    total = rs.total_gpus
    for e in _gpu_entries(rs):
        replicas = e.max_replicas or 1  # None: num_replicas "auto" or unset, Serve's own default range
        need = replicas * e.tp * e.pp
        if need > total and e.tp * e.pp <= total:
            out.append(Finding(ERROR, source, f"RayService/{rs.name}",
                               f"{e.path}.deployment_config.autoscaling_config.max_replicas={replicas}",
                               f"needs {need} GPUs ({replicas} replicas × {e.tp * e.pp}), but worker group "
                               f"{_groups(rs)} ({total} GPUs): Serve would wait for replicas that never start",
                               f"raise the worker group's maxReplicas to {-(-need // max(1, rs.workers[0].gpus_per_pod))} "
                               f"or lower max_replicas to {total // (e.tp * e.pp)}"))
    return out


def rule_accelerator_schedulable(source, rs, ctx) -> list[Finding]:
    """accelerator_type X schedules only where a raylet advertises `accelerator_type:X`."""
    out = []
    obj = f"RayService/{rs.name}"
    for e in _gpu_entries(rs):
        wanted = e.accelerator_type
        if not wanted:
            continue
        field = f"{e.path}.accelerator_type={wanted}"
        resource = f"accelerator_type:{wanted}"
        if any(resource in w.advertised for w in rs.gpu_workers):
            continue
        detected = {w.name: ray_gpu_name(w.node_selector) for w in rs.gpu_workers}
        if any(name == wanted for name in detected.values()):
            continue
        known = {g: n for g, n in detected.items() if n}
        if known:
            group, name = next(iter(known.items()))
            out.append(Finding(ERROR, source, obj, field,
                               f"worker group {group} selects nodes Ray labels accelerator_type:{name}, never "
                               f"{resource}: the placement group would wait forever",
                               f"set accelerator_type: {name}, or advertise the resource on the worker group "
                               f"(resources: {{\"{resource}\": \"1\"}})"))
        else:
            out.append(Finding(ERROR, source, obj, field,
                               f"no GPU worker group selects a GPU model (nodeSelector {GKE_ACCELERATOR_LABEL} or "
                               f"{GFD_PRODUCT_LABEL}) or advertises {resource}: replicas schedule only if Ray "
                               "happens to detect that exact name",
                               "add a nodeSelector for the GPU model to the worker group, or remove accelerator_type"))
    return out


def rule_ray_versions_agree(source, rs, ctx) -> list[Finding]:
    """Every Ray image tag = spec.rayClusterConfig.rayVersion = the Ray the CLI pins."""
    out = []
    obj = f"RayService/{rs.name}"
    ray_version = str(rs.cluster.get("rayVersion", ""))
    pinned = ctx.get("pinned_ray")
    if pinned and ray_version != pinned:
        out.append(Finding(ERROR, source, obj, f"spec.rayClusterConfig.rayVersion={ray_version}",
                           f"differs from the Ray this repository validates serve configs with ({pinned})",
                           f"use a {pinned} image tag in manifests/base/kustomization.yaml"))
    for field, image in ray_containers(rs):
        ref = parse_image(image)
        version = ref.tag.split("-", 1)[0]
        if not ref.name.startswith("ray") or not re.match(r"^\d+\.\d+\.\d+$", version):
            continue  # no Ray version in the tag: the image rule reports what it can
        if version != ray_version:
            out.append(Finding(ERROR, source, obj, f"{field}={image}",
                               f"runs Ray {version} but rayVersion is {ray_version}",
                               f"change the tag in one place: {ctx.get('image_fix_where') or 'the image'}"))
    return out


def rule_head_schedules_no_gpu_work(source, rs, ctx) -> list[Finding]:
    """With GPU workers, the head advertises 0 GPUs so no replica lands on it."""
    if not rs.gpu_workers:
        return []
    value = str((rs.head.ray_start_params if rs.head else {}).get("num-gpus", ""))
    if value == "0":
        return []
    return [Finding(ERROR, source, f"RayService/{rs.name}",
                    f"spec.rayClusterConfig.headGroupSpec.rayStartParams.num-gpus={value or '(unset)'}",
                    "the head may be given GPU replicas (or its node's GPUs) and, if it dies, takes the GCS "
                    "and every replica with it", 'set num-gpus: "0" on the head group')]


def _walk_env(node, path=""):
    if isinstance(node, dict):
        if "name" in node and ("value" in node or "valueFrom" in node) and isinstance(node.get("name"), str):
            yield path, node
        for k, v in node.items():
            yield from _walk_env(v, f"{path}.{k}" if path else k)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk_env(v, f"{path}[{i}]")


def rule_no_secret_literals(source, rs, ctx) -> list[Finding]:
    """No token in git: secrets come from Secrets (components/hf-token), never literals."""
    out = []
    obj = f"RayService/{rs.name}"
    fix = "keep the token in a Secret and reference it with components/hf-token (secretKeyRef)"
    for path, env in _walk_env(rs.obj):
        if SECRET_ENV_NAME.search(env["name"]) and "value" in env and str(env["value"]).strip():
            out.append(Finding(ERROR, source, obj, f"{path}.value", f"{env['name']} is a literal in the manifest", fix))
    for e in rs.llm_entries:
        for name, value in e.env_vars.items():
            if SECRET_ENV_NAME.search(str(name)) and value not in (None, ""):
                out.append(Finding(ERROR, source, obj, f"{e.path}.runtime_env.env_vars.{name}",
                                   "a secret literal in the serve config", fix))
    text = str(rs.obj)
    if not out and SECRET_VALUE.search(text):
        out.append(Finding(ERROR, source, obj, "", "contains a string shaped like an API token", fix))
    return out


def rule_max_model_len_set(source, rs, ctx) -> list[Finding]:
    """Without max_model_len vLLM sizes for the model's full context (128k+), often beyond the KV cache."""
    return [Finding(ERROR, source, f"RayService/{rs.name}", f"{e.path}.engine_kwargs.max_model_len",
                    "is not set: vLLM then reserves the model's whole context window per request and fails "
                    "to start when the KV cache cannot hold one",
                    "set max_model_len to the longest prompt + completion you serve (see `kuberay-llm plan`)")
            for e in rs.llm_entries if e.engine.get("max_model_len") is None]


def rule_placement_fits_strategy(source, rs, ctx) -> list[Finding]:
    """STRICT_PACK puts all TP × PP bundles on one node: impossible beyond one pod's GPUs."""
    out = []
    max_per_pod = rs.max_gpus_per_pod
    for e in _gpu_entries(rs):
        strategy = e.placement_strategy
        if strategy == "STRICT_PACK" and e.tp * e.pp > max_per_pod:
            out.append(Finding(ERROR, source, f"RayService/{rs.name}",
                               f"{e.path}.placement_group_config.strategy=STRICT_PACK",
                               f"needs all {e.tp * e.pp} GPUs of a replica on one node, but a worker pod has "
                               f"{max_per_pod}", "use strategy: PACK"))
    return out


def rule_engine_metrics_when_monitored(source, rs, ctx) -> list[Finding]:
    """A PodMonitor scrapes vLLM's engine metrics only if log_engine_metrics stays on (LLMConfig defaults it to
    True in Ray 2.60: ray/llm/_internal/serve/core/configs/llm_config.py)."""
    if not ctx.get("has_podmonitor"):
        return []
    return [Finding(ERROR, source, f"RayService/{rs.name}", f"{e.path}.log_engine_metrics=false",
                    "the monitoring component is enabled but engine metrics (TTFT, KV-cache usage) are off",
                    "remove log_engine_metrics: false")
            for e in rs.llm_entries if e.config.get("log_engine_metrics") is False]


CLUSTER, SERVE = "cluster", "serve"
RULES: list[tuple[object, tuple[str, ...]]] = [
    (rule_parallelism_fits, (CLUSTER, SERVE)),
    (rule_serve_replicas_fit, (CLUSTER, SERVE)),
    (rule_accelerator_schedulable, (CLUSTER, SERVE)),
    (rule_ray_versions_agree, (CLUSTER,)),
    (rule_ray_images, (CLUSTER, SERVE)),
    (rule_head_schedules_no_gpu_work, (CLUSTER,)),
    (rule_no_secret_literals, (CLUSTER, SERVE)),
    (rule_max_model_len_set, (SERVE,)),
    (rule_placement_fits_strategy, (CLUSTER, SERVE)),
    (rule_engine_metrics_when_monitored, (SERVE,)),
    *((rule, (CLUSTER,)) for rule in kuberay_rules.RULES + pod_rules.RULES),
    (ray_resources.rule_ray_node_resources, (CLUSTER,)),
    (ray_resources.rule_placement_gpus, (CLUSTER, SERVE)),
    (ray_resources.rule_upgrade_needs_two_clusters, (CLUSTER, SERVE)),
    (serve_ports.rule_serve_ports_agree, (CLUSTER, SERVE)),
    (gated_models.rule_gated_model_has_a_token, (CLUSTER, SERVE)),
    (vllm_configs.rule_vllm_scheduler_config, (SERVE,)),
    *((rule, (CLUSTER, SERVE)) for rule in runtime_envs.RULES),
    *((rule, (CLUSTER,)) for rule in ray_start.RULES),
    *((rule, (CLUSTER, SERVE)) for rule in model_facts.RULES + capacity.RULES + deployment_advice.RULES),
    *((rule, (CLUSTER, SERVE)) for rule in cold_start.RULES),
    *serving_patterns.RULES,  # build_dp_openai_app, build_pd_openai_app, routers, high-throughput mode
    *hardening.RULES,  # network, pod security, GCS FT, model cache, component composition
]


def check(source: str, rs: RayServiceFacts, ctx: dict, passed: set[str]) -> list[Finding]:
    """The rules whose inputs are all in `passed` (CLUSTER: the schema accepted the object; SERVE: the serve
    config passed Ray's schema classes and the typed model)."""
    findings = []
    for rule, reads in RULES:
        if set(reads) <= passed:
            findings += rule(source, rs, ctx)
    return findings
