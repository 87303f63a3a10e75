"""Generated bad input for the preflight: every case is invalid by construction and must end in exit 1 or 2 with a
message naming the file, the object and the field; never a traceback (a guard hit counts as one), never exit 0.

Cases (hypothesis, fixed seed, generation phase only):
- rendered objects of every overlay and chart scenario, mutated along their own JSON schema (a wrong type, an
  unknown key where the schema is strict) or by a rule the schema does not carry (ports, quantities, replica
  ranges, names, annotations, upgrade strategies), written to a file and validated as a manifest;
- serve configs: broken YAML, wrong shapes, wrong types and out-of-range engine settings, unknown keys;
- whole documents: empty, comments only, not UTF-8, a top-level list or scalar, no kind, unknown kind, huge names;
- chart values files mutated along values.schema.json, validated with --chart;
- `plan` and `validate` command lines with out-of-range, malformed or conflicting flags.

The validator stays warm in this process: manifests are validated 100 at a time (one kubeconform run each batch).
`python tests/fuzz_preflight.py --cases 5000` (make fuzz) prints `N cases, T tracebacks, S silent passes`.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import math
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

from kuberay_llm import cli, render, toolchain, validate  # noqa: E402
from kuberay_llm.errors import UserError  # noqa: E402

SEED = 20261201
BATCH = 100
CHART = REPO / "charts" / "ray-llm"


@dataclass
class Case:
    kind: str  # manifest | chart | argv
    what: str  # the mutation, for the report
    payload: object  # bytes of a manifest / values file, or an argv list


# --- bases: what the mutations start from ------------------------------------------------------------------


def _bases() -> dict:
    overlays = {name: render.render_overlay(name).objects for name in render.overlay_names()}
    values = {p.name: yaml.safe_load(p.read_text()) or {} for p in sorted((CHART / "ci").glob("*-values.yaml"))}
    schema = json.loads((toolchain.schemas_dir() / "rayservice_ray.io_v1.json").read_text())
    values_schema = json.loads((CHART / "values.schema.json").read_text())
    from kuberay_llm.preflight.model_facts import catalog_model
    from kuberay_llm.preflight.rayservice import facts

    gpu_catalog = set()
    for name, objects in overlays.items():
        rs = facts(_rayservice(objects))
        if rs.gpu_workers and rs.llm_entries and all(catalog_model(e) for e in rs.llm_entries):
            gpu_catalog.add(name)
    return {"overlays": overlays, "values": values, "schema": schema, "values_schema": values_schema,
            "gpu_catalog_overlays": gpu_catalog}


BASES: dict = {}


def bases() -> dict:
    if not BASES:
        BASES.update(_bases())
    return BASES


# --- walking a JSON schema alongside a document -----------------------------------------------------------


def _resolve(node: dict, root: dict) -> dict:
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"].removeprefix("#/")
        target = root
        for part in ref.split("/"):
            target = target[part]
        node = target
    return node if isinstance(node, dict) else {}


def typed_paths(doc, node: dict, root: dict, path=()):
    """(path, schema node) of every value of `doc` that the schema types."""
    node = _resolve(node, root)
    if node:
        yield path, node
    if isinstance(doc, dict):
        props = node.get("properties") or {}
        extra = node.get("additionalProperties")
        for key, value in doc.items():
            child = props.get(key) if key in props else (extra if isinstance(extra, dict) else None)
            if child is not None:
                yield from typed_paths(value, child, root, (*path, key))
    elif isinstance(doc, list) and isinstance(node.get("items"), dict):
        for i, value in enumerate(doc):
            yield from typed_paths(value, node["items"], root, (*path, i))


def get(doc, path):
    for part in path:
        doc = doc[part]
    return doc


def put(doc, path, value):
    get(doc, path[:-1])[path[-1]] = value


def wrong_value(node: dict, pick: int):
    """A value of a type the schema node does not allow (never null: Kubernetes reads null as unset)."""
    allowed = set()
    for option in [node, *node.get("anyOf", []), *node.get("oneOf", [])]:
        kind = option.get("type")
        allowed |= set(kind) if isinstance(kind, list) else {kind} if kind else set()
    if not allowed or "x-kubernetes-preserve-unknown-fields" in node or node.get("x-kubernetes-int-or-string"):
        return None
    if "number" in allowed:
        allowed.add("integer")
    candidates = [("string", "not-of-this-type"), ("integer", 7), ("boolean", True), ("array", ["x"]),
                  ("object", {"unexpected": "mapping"})]
    choices = [v for t, v in candidates if t not in allowed]
    return copy.deepcopy(choices[pick % len(choices)]) if choices else None


def strict_objects(doc, node, root):
    """Paths of mappings whose schema forbids unknown keys."""
    for path, child in typed_paths(doc, node, root):
        value = get(doc, path)
        if isinstance(value, dict) and child.get("additionalProperties") is False and child.get("properties"):
            yield path, child


# --- manifest mutations -------------------------------------------------------------------------------------


def _rayservice(objects):
    return next(o for o in objects if o.get("kind") == "RayService")


def _dump(objects) -> bytes:
    return yaml.safe_dump_all(objects, sort_keys=False).encode()


def _head(rs):
    return rs["spec"]["rayClusterConfig"]["headGroupSpec"]


def _worker(rs):
    return rs["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]


def _ray_container(group):
    return group["template"]["spec"]["containers"][0]


def _serve(rs):
    return yaml.safe_load(rs["spec"]["serveConfigV2"])


def _set_serve(rs, config):
    rs["spec"]["serveConfigV2"] = config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False)


def _slot(config):
    """(args, key) of the first application's first LLMConfig, whichever builder it uses."""
    args = config["applications"][0]["args"]
    key = next(k for k in ("llm_configs", "llm_config", "prefill_config") if k in args)
    return args, key


def _llm(config):
    args, key = _slot(config)
    return args[key][0] if key == "llm_configs" else args[key]


# Each: name -> function(rs, draw) applying one change that the API server, KubeRay or Ray would refuse.
def _bad_port(rs, n):
    _ray_container(_head(rs))["ports"][n % 4]["containerPort"] = [0, -1, 65536, 70000, 10**6][n % 5]


def _bad_host_port(rs, n):
    _ray_container(_head(rs))["ports"][0]["hostPort"] = [-1, 65536, 99999][n % 3]


def _bad_port_name(rs, n):
    _ray_container(_head(rs))["ports"][n % 4]["name"] = ["Dashboard", "a" * 16, "-x", "x--y", "123", "a_b"][n % 6]


def _duplicate_port_name(rs, n):
    ports = _ray_container(_head(rs))["ports"]
    ports[1]["name"] = ports[0]["name"]


def _bad_protocol(rs, n):
    _ray_container(_head(rs))["ports"][0]["protocol"] = ["tcp", "HTTP", "Bogus"][n % 3]


def _negative_quantity(rs, n):
    group = [_head(rs), _worker(rs)][n % 2]
    res = _ray_container(group)["resources"]
    for kind in ("requests", "limits"):
        res.setdefault(kind, {})["cpu"] = ["-1", "-500m", -2][n % 3]


def _request_above_limit(rs, n):
    res = _ray_container(_head(rs))["resources"]
    res["limits"]["memory"] = "1Gi"
    res["requests"]["memory"] = ["2Gi", "1025Mi", "64Gi"][n % 3]


def _fractional_gpu(rs, n):
    res = _ray_container(_worker(rs))["resources"]
    value = ["0.5", "1.5", "500m"][n % 3]
    res.setdefault("limits", {})["nvidia.com/gpu"] = value
    res.setdefault("requests", {})["nvidia.com/gpu"] = value


def _gpu_request_differs(rs, n):
    res = _ray_container(_worker(rs))["resources"]
    res.setdefault("limits", {})["nvidia.com/gpu"] = "2"
    res.setdefault("requests", {})["nvidia.com/gpu"] = "1"


def _gpu_without_limit(rs, n):
    res = _ray_container(_worker(rs))["resources"]
    res.setdefault("requests", {})["nvidia.com/gpu"] = "1"
    res.setdefault("limits", {}).pop("nvidia.com/gpu", None)


def _bad_resource_name(rs, n):
    res = _ray_container(_worker(rs))["resources"]
    res.setdefault("limits", {})[["gpu", "GPU", "nvidia/gpu/x"][n % 3]] = "1"


def _replicas_inverted(rs, n):
    w = _worker(rs)
    w["minReplicas"], w["maxReplicas"] = 5 + n % 3, 1 + n % 3


def _replicas_negative(rs, n):
    _worker(rs)[["minReplicas", "maxReplicas"][n % 2]] = -1 - n % 5


def _idle_timeout_negative(rs, n):
    _worker(rs)["idleTimeoutSeconds"] = -1 - n % 7


def _idle_timeout_without_v2(rs, n):
    _worker(rs)["idleTimeoutSeconds"] = 60 + n


def _upgrade_type(rs, n):
    rs["spec"]["upgradeStrategy"] = {"type": ["Bogus", "newcluster", "Recreate", "BlueGreen", ""][n % 5]}


def _deletion_delay(rs, n):
    rs["spec"]["rayClusterDeletionDelaySeconds"] = -1 - n % 100


def _bad_name(rs, n):
    rs["metadata"]["name"] = ["a" * (48 + n % 20), "Llama-8B", "8b-llama", "llama_8b", "llama.8b", "-x"][n % 6]


def _huge_name(rs, n):
    rs["metadata"]["name"] = "x" * (10**5 + n)


def _bad_timeout(rs, n):
    rs["metadata"].setdefault("annotations", {})["ray.io/initializing-timeout"] = ["0s", "-5m", "ten", "5 m", "0"][n % 5]


def _bad_label(rs, n):
    rs["metadata"].setdefault("labels", {})["team"] = ["a" * 64, "has space", "-lead", "ok/no"][n % 4]


def _bad_label_key(rs, n):
    rs["metadata"].setdefault("labels", {})[["-k", "a/b/c", "x" * 64, "UPPER_/k"][n % 4]] = "v"


def _group_labels(rs, n):
    _worker(rs)["labels"] = {"bad key!": "v"} if n % 2 else {"k": "a" * 70}


def _start_params_labels(rs, n):
    _worker(rs).setdefault("rayStartParams", {})["labels"] = "a=b"


def _resources_twice(rs, n):
    w = _worker(rs)
    w.setdefault("rayStartParams", {})["num-gpus"] = "1"
    w["resources"] = {"accelerator_type:L4": "1"}


def _container_name(rs, n):
    _ray_container([_head(rs), _worker(rs)][n % 2])["name"] = ["Ray-Head", "ray_head", "x" * 64, "-ray"][n % 4]


def _duplicate_container(rs, n):
    group = _worker(rs)
    group["template"]["spec"]["containers"].append(copy.deepcopy(_ray_container(group)))


def _env_name(rs, n):
    _ray_container(_head(rs))["env"][0]["name"] = ["A=B", "tab\tname", "ümlaut", ""][n % 4]


def _missing_volume(rs, n):
    _ray_container(_worker(rs))["volumeMounts"][0]["name"] = "no-such-volume-" + str(n % 9)


def _duplicate_mount_path(rs, n):
    mounts = _ray_container(_worker(rs))["volumeMounts"]
    mounts.append(dict(mounts[0]))


def _pull_policy(rs, n):
    _ray_container(_worker(rs))["imagePullPolicy"] = ["always", "Sometimes", "IfNotPresnt"][n % 3]


def _group_name(rs, n):
    _worker(rs)["groupName"] = ["gpu_group", "gpu group", "GPU_Group", "gpu/group"][n % 4]


def _redis_without_ft(rs, n):
    _ray_container(_head(rs)).setdefault("env", []).append({"name": "RAY_REDIS_ADDRESS", "value": "redis:6379"})


def _head_service_name(rs, n):
    _head(rs)["headService"] = {"metadata": {"name": "my-head"}}


def _no_max_replicas_without_autoscaling(rs, n):
    rs["spec"]["rayClusterConfig"]["enableInTreeAutoscaling"] = False
    _worker(rs).pop(["minReplicas", "maxReplicas"][n % 2], None)


# serve config mutations: each returns the new serveConfigV2 (text or parsed)
def _serve_text(rs, n):
    _set_serve(rs, ["applications: [", "applications:\n\t- name: x", "{{ bad", "", "   ", "null", "42", "- a\n- b",
                    "applications: {}", "applications: 7", "[1, 2]", "applications:\n  - 3", ":\n:"][n % 13])


def _serve_shape(rs, n):
    config = _serve(rs)
    app = config["applications"][0]
    target = n % 10
    args, key = _slot(config)
    if target == 0:
        args[key] = 17 if key != "llm_configs" else "not-a-list"
    elif target == 1:
        args[key] = [] if key == "llm_configs" else {}
    elif target == 2:
        args[key] = [5] if key == "llm_configs" else ["not", "a", "mapping"]
    elif target == 3:
        app["args"] = "args-as-text"
    elif target == 4:
        app["route_prefix"] = "no-slash"
    elif target == 5:
        config["applications"].append(copy.deepcopy(app))  # duplicate name and route
    elif target == 6:
        _llm(config)["engine_kwargs"] = ["tensor_parallel_size", 1]
    elif target == 7:
        _llm(config)["deployment_config"] = "one replica"
    elif target == 8:
        _llm(config)["model_loading_config"] = 42
    else:
        _llm(config)["runtime_env"] = ["pip"]
    _set_serve(rs, config)


ENGINE_BAD = {
    "tensor_parallel_size": [0, -1, "8", 1.5, True, [8]],
    "pipeline_parallel_size": [0, -2, "2", 2.5, False],
    "max_model_len": [0, -5, "abc", 8192.5, True],
    "max_num_seqs": [0, -5, "64", 1.5],
    "max_num_batched_tokens": [0, -1, "8192"],
    "gpu_memory_utilization": [0, 1.5, -0.1, "0.9", 2, True],
    "enable_prefix_caching": ["yes", 1, "true"],
    "dtype": [16, ["bf16"]],
    "kv_cache_dtype": [8, True],
}


def _engine_setting(rs, n):
    config = _serve(rs)
    name = sorted(ENGINE_BAD)[n % len(ENGINE_BAD)]
    values = ENGINE_BAD[name]
    _llm(config).setdefault("engine_kwargs", {})[name] = values[(n // len(ENGINE_BAD)) % len(values)]
    _set_serve(rs, config)


def _serve_unknown_key(rs, n):
    config = _serve(rs)
    where = n % 6
    key = f"bogus_key_{n % 97}"
    if where == 0:
        config["applications"][0][key] = 1
    elif where == 1:
        config["applications"][0]["args"][key] = 1
    elif where == 2:
        _llm(config)[key] = 1
    elif where == 3:
        _llm(config).setdefault("deployment_config", {})[key] = 1
    elif where == 4:
        _llm(config).setdefault("deployment_config", {}).setdefault("autoscaling_config", {})[key] = 1
    else:
        config[key] = 1
    _set_serve(rs, config)


def _serve_values(rs, n):
    config = _serve(rs)
    llm = _llm(config)
    deployment = llm.setdefault("deployment_config", {})
    target = n % 9
    if target == 0:
        deployment.setdefault("autoscaling_config", {})["min_replicas"] = -1 - n % 4
    elif target == 1:
        deployment["autoscaling_config"] = {"min_replicas": 4, "max_replicas": 2}
    elif target == 2:
        deployment["num_replicas"] = 2
        deployment["autoscaling_config"] = {"min_replicas": 1, "max_replicas": 2}
    elif target == 3:
        deployment["max_ongoing_requests"] = 0
    elif target == 4:
        llm["placement_group_config"] = {"bundles": [{"GPU": 1}], "strategy": "SPREAD_OUT"}
    elif target == 5:
        llm["placement_group_config"] = {"strategy": "PACK"}
    elif target == 6:
        llm["accelerator_type"] = "TPU-v9000"
    elif target == 7:
        config["applications"][0]["import_path"] = "ray.serve.llm:build_nonexistent_app"
    else:
        deployment["placement_group_strategy"] = "PACK"
    _set_serve(rs, config)


def _model_facts(rs, n):
    """Facts of the model against its engine arguments (every overlay names a catalog model)."""
    config = _serve(rs)
    engine = _llm(config).setdefault("engine_kwargs", {})
    if n % 2:
        engine["max_model_len"] = 10**7 + n
    else:
        engine["tensor_parallel_size"], engine["pipeline_parallel_size"] = 3, 1
    _set_serve(rs, config)


# --- the kinds of input issue 26 found passing or missed, and the checks added for them ---------------------

INT_FIELDS = ("replicas", "minReplicas", "maxReplicas", "idleTimeoutSeconds")


def _int_overflow(rs, n):
    """Beyond what the CRD's int32 (or int64) fields hold."""
    value = [2**31, 2**31 + n % 1000, 2**63, 10**30, -(2**31) - 1][n % 5]
    _worker(rs)[INT_FIELDS[n % len(INT_FIELDS)]] = value


def _no_metadata_name(rs, n):
    if n % 3 == 0:
        rs.pop("metadata")
    elif n % 3 == 1:
        rs["metadata"].pop("name")
    else:
        rs["metadata"]["name"] = ["", None, 0][n % 3]


def _no_image(rs, n):
    container = _ray_container([_head(rs), _worker(rs)][n % 2])
    if n % 4 == 3:
        container["image"] = ""
    else:
        container.pop("image")


def _kind_case(rs, n):
    rs["kind"] = ["Rayservice", "rayservice", "RAYSERVICE", "RayServices", "rayService"][n % 5]


def _gated_without_token(rs, n):
    """A gated meta-llama repository, with every HF token the containers had removed."""
    for group in [_head(rs), *rs["spec"]["rayClusterConfig"]["workerGroupSpecs"]]:
        for container in group["template"]["spec"]["containers"]:
            container["env"] = [e for e in container.get("env") or [] if e.get("name") not in
                                ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH")]
            container.pop("envFrom", None)
    config = _serve(rs)
    loading = _llm(config).setdefault("model_loading_config", {})
    repository = ["meta-llama/Llama-3.1-8B-Instruct", "meta-llama/Llama-3.1-70B-Instruct",
                  "meta-llama/Llama-3.2-1B-Instruct"][n % 3]
    if n % 2:
        loading["model_source"] = repository
    else:
        loading.pop("model_source", None)
        loading["model_id"] = repository
    for env in (_llm(config).get("runtime_env") or {}, config["applications"][0].get("runtime_env") or {}):
        for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH"):
            (env.get("env_vars") or {}).pop(name, None)
    _set_serve(rs, config)


def _ray_resource_mismatch(rs, n):
    """What Ray is told a worker has, against its container (GPU tiers)."""
    w = _worker(rs)
    gpus = int(_ray_container(w)["resources"]["limits"]["nvidia.com/gpu"])
    params = w.setdefault("rayStartParams", {})
    choice = n % 4
    if choice == 0:
        params["num-gpus"] = str(gpus + 1 + n % 7)
    elif choice == 1:
        params["num-gpus"] = ["0.5", "1.5", "2.25"][n % 3]
    elif choice == 2:
        params["num-cpus"] = ["0.5", "2.5", "1e3"][n % 3]
    else:
        config = _serve(rs)
        _llm(config)["placement_group_config"] = {"bundles": [{"GPU": gpus + 1 + n % 3}]}
        _set_serve(rs, config)


def _port_mismatch(rs, n):
    """Serve's port against the containers' ports and KubeRay's Services."""
    choice = n % 4
    if choice == 0:
        config = _serve(rs)
        config.setdefault("http_options", {})["port"] = 9000 + n % 500
        _set_serve(rs, config)
    elif choice == 1:
        port = next(p for p in _ray_container(_head(rs))["ports"] if p["name"] == "serve")
        port["containerPort"] = 8001 + n % 500
    elif choice == 2:
        config = _serve(rs)
        config.setdefault("http_options", {})["host"] = ["127.0.0.1", "localhost"][n % 2]
        _set_serve(rs, config)
    else:
        rs["spec"]["serveService"] = {"spec": {"ports": [{"name": "serve", "port": 8000,
                                                          "targetPort": 9000 + n % 500}]}}


def _vllm_cross_field(rs, n):
    """Combinations vLLM's SchedulerConfig refuses at start-up (its own class, built offline)."""
    config = _serve(rs)
    engine = _llm(config).setdefault("engine_kwargs", {})
    length = engine.get("max_model_len") if isinstance(engine.get("max_model_len"), int) else 4096
    engine["max_model_len"] = length
    choice = n % 3
    if choice == 0:
        engine.update(enable_chunked_prefill=False, max_num_batched_tokens=max(1, length // 2 - n % 100))
    elif choice == 1:
        engine.update(max_num_seqs=256 + n % 256, max_num_batched_tokens=128 + n % 64)
    else:
        engine["long_prefill_token_threshold"] = length + 1 + n % 1000
    _set_serve(rs, config)


def _fractional_gpu_share(rs, n):
    """A fractional GPU per engine without the VLLM_RAY_PER_WORKER_GPUS the engine needs (GPU tiers)."""
    config = _serve(rs)
    llm = _llm(config)
    share = [0.5, 0.25, 0.2][n % 3]
    llm["placement_group_config"] = ({"bundle_per_worker": {"GPU": share}} if n % 2 else
                                     {"bundles": [{"GPU": share}]})
    llm.setdefault("engine_kwargs", {})["gpu_memory_utilization"] = round(share * 0.8, 2)
    for env in (llm.get("runtime_env") or {}, config["applications"][0].get("runtime_env") or {}):
        (env.get("env_vars") or {}).pop("VLLM_RAY_PER_WORKER_GPUS", None)
    _set_serve(rs, config)


NAMED_MUTATIONS = {f.__name__.lstrip("_"): f for f in [
    _bad_port, _bad_host_port, _bad_port_name, _duplicate_port_name, _bad_protocol, _negative_quantity,
    _request_above_limit, _fractional_gpu, _gpu_request_differs, _gpu_without_limit, _bad_resource_name,
    _replicas_inverted, _replicas_negative, _idle_timeout_negative, _idle_timeout_without_v2, _upgrade_type,
    _deletion_delay, _bad_name, _huge_name, _bad_timeout, _bad_label, _bad_label_key, _group_labels,
    _start_params_labels, _resources_twice, _container_name, _duplicate_container, _env_name, _missing_volume,
    _duplicate_mount_path, _pull_policy, _group_name, _redis_without_ft, _head_service_name,
    _no_max_replicas_without_autoscaling, _serve_text, _serve_shape, _engine_setting, _serve_unknown_key,
    _serve_values, _model_facts, _int_overflow, _no_metadata_name, _no_image, _kind_case, _gated_without_token,
    _ray_resource_mismatch, _port_mismatch, _vllm_cross_field, _fractional_gpu_share]}
# mutations that need a GPU tier (an overlay with nvidia.com/gpu and a catalog model)
GPU_ONLY = {"fractional_gpu", "gpu_request_differs", "model_facts", "ray_resource_mismatch", "fractional_gpu_share"}


def _schema_mutation(objects, n, b):
    """A wrong type or an unknown key somewhere the RayService schema types or forbids."""
    rs = _rayservice(objects)
    if n % 2:
        paths = [(p, node) for p, node in typed_paths(rs, b["schema"], b["schema"]) if p and p[0] != "status"]
        path, node = paths[(n // 2) % len(paths)]
        value = wrong_value(node, n // 7)
        if value is None:
            return None
        put(rs, path, value)
        return f"schema wrong type at {'.'.join(map(str, path))}"
    strict = list(strict_objects(rs, b["schema"], b["schema"]))
    path, _ = strict[(n // 2) % len(strict)]
    get(rs, path)[f"unknownField{n % 89}"] = "x"
    return f"schema unknown key in {'.'.join(map(str, path)) or '(root)'}"


DOCUMENTS = [
    b"", b"# only a comment\n", b"---\n---\n", b"\xff\xfe\x00garbage", b"kind: RayService\n\x80\x81",
    b"- 1\n- 2\n", b"just a scalar\n", b"apiVersion: v1\nmetadata: {name: x}\n", b"kind: NoSuchKind\napiVersion: x/v1\n",
    b"apiVersion: ray.io/v1\nkind: RayService\n", b"{{{", b"a: b: c", b"apiVersion: ray.io/v1\nkind: RayService\n"
    b"metadata: {name: x}\nspec: 5\n", b"\t- tab", b"null\n", b"[]", b"{}",
]


@st.composite
def manifest_cases(draw):
    b = bases()
    names = sorted(b["overlays"])
    overlay = draw(st.sampled_from(names))
    n = draw(st.integers(0, 10**6))
    family = draw(st.sampled_from(["named", "named", "named", "schema", "document"]))
    objects = copy.deepcopy(b["overlays"][overlay])
    if family == "document":
        return Case("manifest", f"document {n % len(DOCUMENTS)}", DOCUMENTS[n % len(DOCUMENTS)])
    if family == "schema":
        what = _schema_mutation(objects, n, b)
        if what is None:
            what = "schema unknown key"
            _rayservice(objects)["spec"][f"unknownField{n % 89}"] = "x"
        return Case("manifest", f"{overlay}: {what}", _dump(objects))
    choices = sorted(k for k in NAMED_MUTATIONS if overlay in b["gpu_catalog_overlays"] or k not in GPU_ONLY)
    name = draw(st.sampled_from(choices))
    NAMED_MUTATIONS[name](_rayservice(objects), n)
    return Case("manifest", f"{overlay}: {name} #{n % 1000}", _dump(objects))


@st.composite
def chart_cases(draw):
    b = bases()
    scenario = draw(st.sampled_from(sorted(b["values"])))
    values = copy.deepcopy(b["values"][scenario])
    n = draw(st.integers(0, 10**6))
    root = b["values_schema"]
    if n % 2:
        paths = [(p, node) for p, node in typed_paths(values, root, root) if p]
        path, node = paths[(n // 2) % len(paths)] if paths else ((), root)
        value = wrong_value(node, n // 5)
        if path and value is not None:
            put(values, path, value)
            return Case("chart", f"{scenario}: wrong type at {'.'.join(map(str, path))}", yaml.safe_dump(values).encode())
    strict = list(strict_objects(values, root, root))
    path, _ = strict[(n // 2) % len(strict)]
    get(values, path)[f"unknownValue{n % 83}"] = 1
    return Case("chart", f"{scenario}: unknown key in {'.'.join(map(str, path)) or '(root)'}", yaml.safe_dump(values).encode())


PLAN_BAD = {
    "--tp": ["0", "-3", "abc", "1.5"], "--pp": ["0", "-1", "x"], "--max-model-len": ["0", "-5", "ten", "99999999"],
    "--gpu-memory-utilization": ["0", "1.5", "-1", "nan", "inf", "abc"], "--max-num-seqs": ["0", "-5", "1e3"],
    "--max-num-batched-tokens": ["0", "-1"], "--kv-cache-dtype": ["fp4", "bogus", ""], "--gpu": ["TPU", "", "H9000"],
    "--model": ["acme/nothing", ""],
}
OVERLAY_CONFLICTS = ["--tp", "--pp", "--max-model-len", "--max-num-seqs", "--max-num-batched-tokens",
                     "--gpu-memory-utilization", "--kv-cache-dtype"]


@st.composite
def argv_cases(draw):
    n = draw(st.integers(0, 10**6))
    family = draw(st.sampled_from(["plan-range", "plan-conflict", "validate"]))
    if family == "plan-range":
        flag = draw(st.sampled_from(sorted(PLAN_BAD)))
        value = PLAN_BAD[flag][n % len(PLAN_BAD[flag])]
        argv = ["plan", "--model", "meta-llama/Llama-3.1-8B-Instruct", "--gpu", "H100-80GB"]
        argv = [a for a in argv if not (flag in ("--model", "--gpu") and a == flag)]
        if flag == "--model":
            argv = ["plan", "--gpu", "H100-80GB"]
        elif flag == "--gpu":
            argv = ["plan", "--model", "meta-llama/Llama-3.1-8B-Instruct"]
        return Case("argv", f"plan {flag} {value!r}", [*argv, flag, value])
    if family == "plan-conflict":
        flag = draw(st.sampled_from(OVERLAY_CONFLICTS))
        overlay = draw(st.sampled_from(["small", "medium", "large"]))
        value = {"--gpu-memory-utilization": "0.8", "--kv-cache-dtype": "fp8"}.get(flag, str(1 + n % 8))
        return Case("argv", f"plan {overlay} {flag}", ["plan", overlay, flag, value])
    bad = [["validate", "no-such-overlay"], ["validate", "/nonexistent/file.yaml"], ["validate", "--values", "x.yaml"],
           ["validate", "--chart", "/nonexistent"], ["validate", "--bogus-flag"], ["validate", "-", "-"],
           ["validate", "--chart", str(CHART), "--values", "/nonexistent-values.yaml"], ["validate", str(REPO / "manifests")],
           ["plan"], ["plan", "small", "--model", "Qwen/Qwen2.5-7B-Instruct"], ["plan", "nowhere"]]
    return Case("argv", f"argv {n % len(bad)}", bad[n % len(bad)])


def all_cases():
    return st.one_of(manifest_cases(), manifest_cases(), manifest_cases(), manifest_cases(), manifest_cases(),
                     manifest_cases(), manifest_cases(), manifest_cases(), chart_cases(), argv_cases())


def generate(count: int, seed_value: int = SEED) -> list[Case]:
    cases: list[Case] = []

    @settings(max_examples=count, database=None, phases=[Phase.generate], deadline=None,
              suppress_health_check=list(HealthCheck))
    @seed(seed_value)
    @given(all_cases())
    def collect(case):
        cases.append(case)

    collect()
    return cases


# --- running them -------------------------------------------------------------------------------------------


@dataclass
class Result:
    case: Case
    exit_code: int
    output: str
    traceback: bool = False
    silent: bool = False
    unnamed: bool = False


def _names_everything(outcome: validate.Outcome) -> bool:
    if outcome.exit_code == validate.EXIT_INVALID:
        return any(f.source == outcome.source and f.obj and f.field for f in outcome.errors)
    return outcome.source in outcome.error or Path(outcome.source).name in outcome.error


def _run_files(cases: list[Case], tmp: Path, kind: str) -> list[Result]:
    files = []
    for i, case in enumerate(cases):
        path = tmp / f"case-{kind}-{i}.yaml"
        path.write_bytes(case.payload)
        files.append(path)
    before = validate.internal_errors
    if kind == "manifest":
        sources = [(str(p), lambda p=p: render.load_source(str(p))) for p in files]
    else:
        from kuberay_llm.render_chart import render_chart

        sources = [(str(p), lambda p=p: render_chart(CHART, p)) for p in files]
    outcomes = validate.validate_sources(sources)
    guard_hits = validate.internal_errors - before
    out = []
    for case, outcome in zip(cases, outcomes):
        text = outcome.error or "\n".join(str(f) for f in outcome.errors)
        r = Result(case, outcome.exit_code, text)
        r.traceback = "internal error" in outcome.error
        r.silent = outcome.exit_code == validate.EXIT_VALID
        r.unnamed = not r.silent and not r.traceback and not _names_everything(outcome)
        out.append(r)
    assert sum(r.traceback for r in out) == guard_hits
    return out


def _run_argv(case: Case) -> Result:
    stdout, stderr = io.StringIO(), io.StringIO()
    traceback = False
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = cli.main(list(case.payload))
    except SystemExit as exc:  # argparse: usage errors
        code = exc.code if isinstance(exc.code, int) else 2
    except UserError as err:
        code, traceback = err.exit_code, True  # escaped the CLI's handler
    except Exception as exc:  # noqa: BLE001 - this is what the fuzz looks for
        code, traceback = 2, True
        stderr.write(f"{type(exc).__name__}: {exc}")
    text = stdout.getvalue() + stderr.getvalue()
    traceback = traceback or "Traceback" in text or "internal error" in text
    r = Result(case, code, text, traceback=traceback, silent=code == 0)
    r.unnamed = not r.silent and not traceback and "error" not in text and "usage:" not in text
    return r


def run(cases: list[Case]) -> list[Result]:
    results = []
    with tempfile.TemporaryDirectory(prefix="kuberay-llm-fuzz-") as tmp:
        for kind in ("manifest", "chart"):
            todo = [c for c in cases if c.kind == kind]
            for start in range(0, len(todo), BATCH):
                results += _run_files(todo[start:start + BATCH], Path(tmp), kind)
        results += [_run_argv(c) for c in cases if c.kind == "argv"]
    return results


def summary(results: list[Result]) -> str:
    tracebacks = sum(r.traceback for r in results)
    silent = sum(r.silent for r in results)
    return f"{len(results)} cases, {tracebacks} tracebacks, {silent} silent passes"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--show", type=int, default=10, help="failures to print")
    args = parser.parse_args(argv)
    started = time.monotonic()
    cases = generate(args.cases, args.seed)
    results = run(cases)
    bad = [r for r in results if r.traceback or r.silent or r.unnamed]
    for r in bad[: args.show]:
        why = "traceback" if r.traceback else "silent pass" if r.silent else "message names no file/object/field"
        print(f"FAIL ({why}) {r.case.kind} {r.case.what}: exit {r.exit_code}: {r.output[:400]}")
    unnamed = sum(r.unnamed for r in results)
    kinds = {k: sum(c.kind == k for c in cases) for k in ("manifest", "chart", "argv")}
    print(f"seed {args.seed}: {kinds['manifest']} manifests, {kinds['chart']} chart values, {kinds['argv']} command "
          f"lines; {unnamed} messages without file/object/field; {time.monotonic() - started:.0f}s")
    print(summary(results))
    return 1 if bad else 0


if __name__ == "__main__":
    logging_quiet = __import__("logging")
    sys.exit(main())
