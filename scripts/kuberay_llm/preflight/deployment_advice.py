"""Check 4e: the operational advice of Ray's LLM deployment guides, and what each kind of model needs.

- An engine that spans worker pods (pipeline parallel over nodes) keeps those pods in one zone: Ray's large-model
  guide asks to "disable cross-zone autoscaling" because the nodes exchange heavy traffic and cross-zone traffic
  costs about $0.02 per GB (WARNING: a single-zone cluster needs nothing).
- The weights volume holds the whole checkpoint: Ray Serve LLM downloads the full repository on every node of a
  replica before vLLM loads its share (ERROR, with the arithmetic).
- Multimodal engine arguments only on a multimodal model: vLLM builds its MultiModalConfig only for models that
  support images and silently drops the arguments otherwise (vllm/config/model.py ModelConfig.__post_init__),
  so a text-only model then rejects every image request (ERROR).
- The reasoning parser of the model's family (ERROR); a reasoning model without one (WARNING: the thinking stays
  in message.content). The family's parser is the catalog's (scripts/kuberay_llm/data/models.yaml).
- The checkpoint's own quantization (config.json quantization_config, not an engine argument) on a GPU vLLM runs
  it on: vllm/config/vllm.py _get_quantization_config refuses a GPU below QuantizationConfig.get_min_capability()
  (ERROR; checked where vLLM is installed).
Each rule returns nothing for a model the catalog does not know (model_facts warns once about those).
"""

from __future__ import annotations

import functools
import math
import posixpath

from kuberay_llm.kubenames import quantity
from kuberay_llm.plan.catalog import Model
from kuberay_llm.plan.checkpoint import GB, checkpoint
from kuberay_llm.preflight.findings import ERROR, WARNING, Finding
from kuberay_llm.preflight.model_facts import COMPUTE_CAPABILITY, catalog_model, gpu_type
from kuberay_llm.preflight.rayservice import LLMEntry, RayServiceFacts, WorkerGroup, items, mapping

ZONE_LABEL = "topology.kubernetes.io/zone"
# Where Ray Serve LLM's snapshot_download puts a Hugging Face model: $HF_HUB_CACHE, else $HF_HOME/hub, else
# ~/.cache/huggingface/hub (huggingface_hub constants.py); the ray images run as the user ray (/home/ray).
DEFAULT_HF_HOME = "/home/ray/.cache/huggingface"
GiB = 1024**3
# Labels KubeRay v1.6.2 puts on every worker pod it creates (ray-operator/controllers/ray/common/pod.go labelPod);
# ray.io/cluster holds the RayCluster's generated name, which no manifest can know.
KUBERAY_WORKER_LABELS = {"ray.io/node-type": "worker", "ray.io/is-ray-node": "yes",
                         "app.kubernetes.io/name": "kuberay", "app.kubernetes.io/created-by": "kuberay-operator"}
GENERATED_LABELS = ("ray.io/cluster", "ray.io/identifier")


def _obj(rs: RayServiceFacts) -> str:
    return f"RayService/{rs.name}"


def _known(entry: LLMEntry) -> Model | None:
    return catalog_model(entry)


# --- one zone for an engine that spans pods -------------------------------------------------------------------

def _worker_labels(group: WorkerGroup) -> dict:
    labels = {str(k): str(v) for k, v in mapping(mapping(group.template.get("metadata")).get("labels")).items()}
    return {**labels, **KUBERAY_WORKER_LABELS, "ray.io/group": group.name}


def _selects_own_workers(term: dict, labels: dict) -> bool:
    """Whether a pod affinity term's selector matches the group's worker pods (keys of generated labels count
    only through matchLabelKeys or Exists)."""
    selector = mapping(term.get("labelSelector"))
    if not selector:
        return False
    for key, value in mapping(selector.get("matchLabels")).items():
        if labels.get(str(key)) != str(value):
            return False
    for expr in items(selector.get("matchExpressions")):
        expr = mapping(expr)
        key, op, values = str(expr.get("key")), expr.get("operator"), [str(v) for v in items(expr.get("values"))]
        present = key in labels or key in GENERATED_LABELS
        if op == "Exists" and not present or op == "DoesNotExist" and present:
            return False
        if op == "In" and labels.get(key) not in values or op == "NotIn" and labels.get(key) in values:
            return False
    return True


def _kept_in_one_zone(group: WorkerGroup) -> bool:
    spec = group.pod_spec
    if ZONE_LABEL in group.node_selector:
        return True
    affinity = mapping(spec.get("affinity"))
    node_terms = items(mapping(mapping(affinity.get("nodeAffinity")).get(
        "requiredDuringSchedulingIgnoredDuringExecution")).get("nodeSelectorTerms"))
    if node_terms and all(any(mapping(x).get("key") == ZONE_LABEL and mapping(x).get("operator") == "In"
                              and len(items(mapping(x).get("values"))) == 1
                              for x in items(mapping(t).get("matchExpressions"))) for t in node_terms):
        return True
    labels = _worker_labels(group)
    return any(mapping(t).get("topologyKey") == ZONE_LABEL and _selects_own_workers(mapping(t), labels)
               for t in items(mapping(affinity.get("podAffinity")).get("requiredDuringSchedulingIgnoredDuringExecution")))


def rule_multi_node_engine_in_one_zone(source, rs: RayServiceFacts, ctx) -> list[Finding]:
    out = []
    for e in rs.llm_entries:
        if e.on_cpu:
            continue
        # A data-parallel group (build_dp_openai_app) is one gang of ranks exchanging experts' all-to-all.
        dp = e.setting("data_parallel_size", 1)
        need = e.tp * e.pp * dp
        for g in rs.gpu_workers:
            per_pod = g.gpus_per_pod
            if need <= per_pod or need > per_pod * g.max_replicas or _kept_in_one_zone(g):
                continue  # one pod per replica, or a shape parallelism_fits reports, or already one zone
            pods = math.ceil(need / per_pod)
            out.append(Finding(
                WARNING, source, _obj(rs), f"{g.path}.template.spec.affinity",
                f"one {'data-parallel group' if dp > 1 else 'replica'} of {e.path} spans {pods} worker pods "
                f"({need} GPUs, {per_pod} per pod of group {g.name}) "
                "but nothing keeps those pods in one zone: the traffic between pipeline stages may cross zones "
                "(slower, and billed at about $0.02 per GB)",
                f"add ../../manifests/components/one-zone to the overlay (chart: worker.sameZone), a required pod "
                f"affinity on {ZONE_LABEL}, or pin one zone with a {ZONE_LABEL} nodeSelector; on GKE also give "
                "the node pool compact placement"))
    return out


# --- the weights volume holds the checkpoint ------------------------------------------------------------------

def _env(container: dict, name: str) -> str | None:
    for env in items(container.get("env")):
        env = mapping(env)
        if env.get("name") == name and isinstance(env.get("value"), str):
            return env["value"]
    return None


def _download_dir(entry: LLMEntry, container: dict) -> str:
    download_dir = entry.engine.get("download_dir")
    if isinstance(download_dir, str) and download_dir:
        return download_dir
    hub = _env(container, "HF_HUB_CACHE")
    return hub or posixpath.join(_env(container, "HF_HOME") or DEFAULT_HF_HOME, "hub")


def _under(path: str, mount: str) -> bool:
    mount = mount.rstrip("/") or "/"
    return path == mount or path.startswith(mount + "/") or mount == "/"


def _capacity(group: WorkerGroup, directory: str) -> list[tuple[float, str, str]]:
    """(bytes, field, value) of each limit on what `directory` can hold in this group's pod, smallest first."""
    spec, out = group.pod_spec, []
    containers = group.containers
    if not containers:
        return []
    main = containers[0]
    mounts = [mapping(m) for m in items(main.get("volumeMounts"))
              if isinstance(mapping(m).get("mountPath"), str) and _under(directory, mapping(m)["mountPath"])]
    pod_ephemeral = [(i, mapping(mapping(c.get("resources")).get("limits")).get("ephemeral-storage"))
                     for i, c in enumerate(containers)]
    limited = [(i, v) for i, v in pod_ephemeral if quantity(v) is not None]
    ephemeral = None
    if limited and len(limited) == len(containers):  # every container limited: the pod's total is bounded
        total = sum(quantity(v) for _, v in limited)
        i, v = limited[0]
        field = f"{group.path}.template.spec.containers[{i}].resources.limits.ephemeral-storage"
        ephemeral = (float(total), field, str(v) if len(limited) == 1 else f"{total} bytes in all containers")
    if not mounts:  # the container's writable layer: only its ephemeral-storage limit bounds it
        return [ephemeral] if ephemeral else []
    mount = max(mounts, key=lambda m: len(m["mountPath"]))
    for v, volume in enumerate(items(spec.get("volumes"))):
        volume = mapping(volume)
        if volume.get("name") != mount.get("name"):
            continue
        where = f"{group.path}.template.spec.volumes[{v}]"
        if "emptyDir" in volume:
            empty = mapping(volume.get("emptyDir"))
            if empty.get("medium") == "Memory":
                return []
            found = [ephemeral] if ephemeral else []
            size = empty.get("sizeLimit")
            if quantity(size) is not None:
                found.append((float(quantity(size)), f"{where}.emptyDir.sizeLimit", str(size)))
            return sorted(found)
        claim = mapping(mapping(mapping(mapping(volume.get("ephemeral")).get("volumeClaimTemplate")).get("spec"))
                        .get("resources")).get("requests", {})
        storage = mapping(claim).get("storage")
        if quantity(storage) is not None:
            return [(float(quantity(storage)),
                     f"{where}.ephemeral.volumeClaimTemplate.spec.resources.requests.storage", str(storage))]
        return []  # a PersistentVolumeClaim or hostPath: its size is not in the manifest
    return []


def rule_weights_volume_holds_the_checkpoint(source, rs: RayServiceFacts, ctx) -> list[Finding]:
    out = []
    for e in rs.llm_entries:
        model = _known(e)
        if model is None:
            continue
        ckpt = checkpoint(model)
        for g in (rs.workers if e.on_cpu else rs.gpu_workers):
            if not g.containers:
                continue
            directory = _download_dir(e, g.containers[0])
            limits = _capacity(g, directory)
            if not limits or limits[0][0] >= ckpt.bytes:
                continue
            size, field, value = limits[0]
            out.append(Finding(
                ERROR, source, _obj(rs), f"{field}={value}",
                f"holds {size / GB:.1f} GB, but {model.name} downloads {ckpt.arithmetic()} into {directory} on "
                f"every node of a replica (worker group {g.name}): the download fails with 'No space left on "
                "device' or the kubelet evicts the pod",
                f"raise it to at least {math.ceil(ckpt.bytes / GiB)}Gi (the checkpoint, before logs and caches)"))
    return out


# --- multimodal arguments -------------------------------------------------------------------------------------

@functools.cache
def multimodal_engine_args() -> frozenset[str]:
    """vLLM's MultiModalConfig engine arguments (its "MultiModalConfig" argument group), or none without vLLM."""
    try:
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.utils.argparse_utils import FlexibleArgumentParser
    except ImportError:
        return frozenset()
    parser = AsyncEngineArgs.add_cli_args(FlexibleArgumentParser())
    return frozenset(a.dest for g in parser._action_groups if g.title == "MultiModalConfig" for a in g._group_actions)


def rule_multimodal_args_on_multimodal_models(source, rs: RayServiceFacts, ctx) -> list[Finding]:
    out = []
    for e in rs.llm_entries:
        model = _known(e)
        if model is None or model.vision is not None:
            continue
        for name in sorted(set(e.engine) & multimodal_engine_args()):
            out.append(Finding(
                ERROR, source, _obj(rs), f"{e.path}.engine_kwargs.{name}",
                f"is a multimodal argument, but {model.name} is text-only (its config.json has no vision_config): "
                "vLLM drops it, and every request with an image fails",
                "remove it, or serve a vision model (overlays/vision)"))
    return out


# --- reasoning parser -----------------------------------------------------------------------------------------

def rule_reasoning_parser_of_the_family(source, rs: RayServiceFacts, ctx) -> list[Finding]:
    out = []
    for e in rs.llm_entries:
        model = _known(e)
        if model is None:
            continue
        parser = e.engine.get("reasoning_parser")
        field = f"{e.path}.engine_kwargs.reasoning_parser"
        expected = model.reasoning.parser if model.reasoning else None
        if isinstance(parser, str) and parser:
            if expected is None:
                out.append(Finding(ERROR, source, _obj(rs), f"{field}={parser}",
                                   f"{model.name} is not a reasoning model: it writes no thinking for a parser to "
                                   "separate (vLLM's think-token parsers fail to start on a vocabulary without "
                                   "their tokens)", "remove reasoning_parser"))
            elif parser != expected:
                out.append(Finding(ERROR, source, _obj(rs), f"{field}={parser}",
                                   f"is not the parser of {model.name}'s family ({expected}): the thinking is split "
                                   "from the answer in the wrong place, or not at all",
                                   f"set reasoning_parser: {expected}"))
        elif expected and expected != "openai_gptoss" and e.role != "prefill":
            # vLLM sets openai_gptoss itself (models/config.py); a prefill engine returns no text to parse.
            out.append(Finding(WARNING, source, _obj(rs), field,
                               f"is not set, but {model.name} is a reasoning model: its thinking stays in "
                               "message.content between <think> tags, and message.reasoning stays empty",
                               f"set reasoning_parser: {expected}"))
    return out


# --- the checkpoint's quantization on this GPU ----------------------------------------------------------------

def _min_capability(method: str) -> int | None:
    try:
        from vllm.model_executor.layers.quantization import get_quantization_config
    except ImportError:
        return None
    try:
        return int(get_quantization_config(method).get_min_capability())
    except Exception:  # noqa: BLE001 - a method this vLLM does not know: vLLM itself reports it
        return None


def rule_checkpoint_quantization_on_this_gpu(source, rs: RayServiceFacts, ctx) -> list[Finding]:
    out = []
    for e in rs.llm_entries:
        model = _known(e)
        if e.on_cpu or model is None or model.quantization is None or not model.quantization.quant_method:
            continue
        method = model.quantization.quant_method
        gpu = gpu_type(rs, e)
        capability = COMPUTE_CAPABILITY.get(gpu or "")
        needed = _min_capability(method)
        if capability is None or needed is None or capability >= needed:
            continue
        field = f"{e.path}.accelerator_type={gpu}" if e.accelerator_type else f"{e.path}.model_loading_config"
        out.append(Finding(
            ERROR, source, _obj(rs), field,
            f"{model.name}'s checkpoint is {method}-quantized (config.json quantization_config), which vLLM runs "
            f"only on compute capability {needed / 10:.1f} or more; {gpu} has {capability / 10:.1f}: vLLM refuses "
            "to start (\"The quantization method ... is not supported for the current GPU\")",
            f"use a GPU with compute capability {needed / 10:.1f} or more (A100, L4, L40S, H100)"))
    return out


RULES = [rule_multi_node_engine_in_one_zone, rule_weights_volume_holds_the_checkpoint,
         rule_multimodal_args_on_multimodal_models, rule_reasoning_parser_of_the_family,
         rule_checkpoint_quantization_on_this_gpu]
