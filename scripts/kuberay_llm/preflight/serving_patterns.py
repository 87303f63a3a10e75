"""Check 4e: Ray Serve LLM's serving patterns beyond build_openai_app, and Serve's high-throughput mode.

What Ray 2.60 checks only on the cluster, after the image pull and the weight download, found here first
(serve_config.py already checked the builders' keys and each LLMConfig; these rules run after it passed):

- the args of `build_dp_openai_app` (data-parallel attention) and `build_pd_openai_app` (prefill/decode
  disaggregation) through every validator of Ray's own classes, DPOpenAiServingArgs and PDServingArgs
  (ray/llm/_internal/serve/serving_patterns/{data_parallel,prefill_decode}/builder.py), where vLLM is installed
  (the builder modules import it): e.g. "P/D model id mismatch", "kv_transfer_config is required for P/D
  disaggregation";
- the GPU arithmetic of each pattern: a DP group is data_parallel_size Serve replicas of TP x PP GPUs each
  (DPServer.get_deployment_options multiplies num_replicas and the autoscaling bounds by data_parallel_size,
  dp_server.py), and P/D needs the prefill and the decode deployments at once;
- what DPServer and vLLM refuse: data_parallel_size 1 under build_dp_openai_app (no gang: "DPServer requires
  gang scheduling to be enabled"), data_parallel_size > 1 under build_openai_app (no DP rank is ever set), a
  placement strategy (DP gangs are always placed PACK, dp_server.py), the NIXL connector's decode side with
  pipeline parallelism (vLLM 0.29 nixl/base_worker.py), a KV connector Ray has no backend for;
- request routers (deployment_config.request_router_config): the router's kwargs against its own
  initialize_state, read from the pinned Ray's source; prefix-aware and KV-aware routing with prefix caching
  turned off; KV-aware routing without direct streaming or without ai-dynamo (not in Ray's llm extra);
- high-throughput mode (RAY_SERVE_THROUGHPUT_OPTIMIZED, RAY_SERVE_ENABLE_HA_PROXY,
  RAY_SERVE_LLM_ENABLE_DIRECT_STREAMING): one value on the head and every worker, in the container environment
  (the Serve controller and the proxies never see a runtime_env), "1" and nothing else means on, and direct
  streaming's limits (ray/llm/_internal/serve/core/ingress/builder.py, ray/serve/_private/build_app.py);
- a runtime_env that pip/uv-installs another vLLM than the one Ray pins exactly (ray[llm] requires
  vllm[audio]==<version>: the installed Ray's metadata says which).
"""

from __future__ import annotations

import ast
import copy
import functools
import importlib
import importlib.metadata

from kuberay_llm.preflight.findings import ERROR, WARNING, Finding
from kuberay_llm.preflight.import_paths import _source_file, split
from kuberay_llm.preflight.rayservice import GPU, RayServiceFacts
from kuberay_llm.serveconfig import Application, LLMEntry

OPENAI = "ray.serve.llm:build_openai_app"
DP = "ray.serve.llm:build_dp_openai_app"
PD = "ray.serve.llm:build_pd_openai_app"


# Serve's high-throughput flags, read once when each Ray process starts; "1" is on, anything else off
# (ray/serve/_private/constants.py, ray/llm/_internal/serve/constants.py).
THROUGHPUT = "RAY_SERVE_THROUGHPUT_OPTIMIZED"
HA_PROXY = "RAY_SERVE_ENABLE_HA_PROXY"
DIRECT_STREAMING = "RAY_SERVE_LLM_ENABLE_DIRECT_STREAMING"
FORWARD_BODY = "RAY_SERVE_INGRESS_REQUEST_ROUTER_FORWARD_BODY"
CLUSTER_FLAGS = (THROUGHPUT, HA_PROXY, DIRECT_STREAMING)
HIGH_THROUGHPUT_FIX = "set it in the container env of the head and of every worker group (components/high-throughput)"

# Ray's messages, quoted where Ray raises them.
HAPROXY_REQUIRED = ("`ingress_request_router` requires HAProxy. Set `RAY_SERVE_ENABLE_HA_PROXY=1` in the Ray "
                    "controller's environment.")  # ray/serve/_private/build_app.py
DIRECT_ONE_CONFIG = ("RAY_SERVE_LLM_ENABLE_DIRECT_STREAMING currently supports exactly one LLM config")  # builder.py
DIRECT_NO_INGRESS_CONFIG = ("RAY_SERVE_LLM_ENABLE_DIRECT_STREAMING does not support ingress_deployment_config "
                            "because the LLM server class is used directly as the ingress deployment")
DIRECT_NO_INGRESS_CLS = ("RAY_SERVE_LLM_ENABLE_DIRECT_STREAMING does not support ingress_cls_config because the "
                         "LLM server class is used directly as the ingress deployment")
DIRECT_LORA = "LoRA multiplexing with direct streaming requires RAY_SERVE_INGRESS_REQUEST_ROUTER_FORWARD_BODY=1"
CUSTOM_INGRESS_ROUTER = ("A custom `request_router_config.request_router_class` is not supported on the ingress "
                         "deployment when HAProxy is enabled")  # build_app.py
NO_GANG = "DPServer requires gang scheduling to be enabled"  # dp_server.py, raised when data_parallel_size is 1
NIXL_DECODE_PP = "NixlPushConnector consumer (decode) does not support pipeline_parallel_size > 1"  # vLLM 0.29

PREFIX_ROUTER, KV_ROUTER = "PrefixCacheAffinityRouter", "KVAwareRouter"
MARKER = "request_router_config"  # components/prefix-routing's delimiter
DEFAULT_INGRESS = "OpenAiIngress"  # the ingress class the builders use unless ingress_cls_config names another
KV_BACKENDS_MODULE = "ray.llm._internal.serve.engines.vllm.kv_transfer.factory"


# --- reading the config ------------------------------------------------------------------------------------


def _obj(rs: RayServiceFacts) -> str:
    return f"RayService/{rs.name}"


def llm_apps(rs: RayServiceFacts) -> list[Application]:
    return [a for a in (rs.serve.applications if rs.serve else ()) if a.import_path in (OPENAI, DP, PD)]


def data_parallel_size(entry: LLMEntry) -> int:
    return entry.setting("data_parallel_size", 1)


def replica_groups(entry: LLMEntry) -> int:
    """Serve replicas as written (DP groups under the DP builders): autoscaling max_replicas, num_replicas, else 1."""
    return entry.max_replicas or 1


def gpus_of(entry: LLMEntry, app: Application) -> int:
    """GPUs a deployment needs at its largest: DP groups x data_parallel_size x TP x PP."""
    dp = data_parallel_size(entry) if app.import_path in (DP, PD) else 1
    return replica_groups(entry) * dp * entry.tp * entry.pp


def _what(entry: LLMEntry, app: Application) -> str:
    dp = data_parallel_size(entry) if app.import_path in (DP, PD) else 1
    groups = replica_groups(entry)
    return (f"{entry.role + ' ' if entry.role else ''}needs {gpus_of(entry, app)} GPUs ({groups} DP group"
            f"{'s' if groups != 1 else ''} × data_parallel_size {dp} × tensor_parallel_size {entry.tp} × "
            f"pipeline_parallel_size {entry.pp})")


def router_name(entry: LLMEntry) -> str | None:
    path = entry.request_router_class
    return split(path)[1] if path else None


def _env(container: dict) -> dict[str, object]:
    """name -> value of a container's literal env entries (valueFrom entries read as None)."""
    out = {}
    for item in container.get("env") or []:
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            out[item["name"]] = item.get("value")
    return out


def ray_container_envs(rs: RayServiceFacts) -> list[tuple[str, dict]]:
    """(group path, env) of each group's Ray container (KubeRay runs Ray in containers[0])."""
    return [(f"{g.path}.template.spec.containers[0]", _env(g.containers[0])) for g in rs.groups if g.containers]


def flag(rs: RayServiceFacts, name: str) -> bool:
    """The flag as the head's Ray processes read it (the Serve controller and the app builder run there)."""
    envs = ray_container_envs(rs)
    return bool(envs) and envs[0][1].get(name) == "1"


# --- the builders' own validators ----------------------------------------------------------------------------


@functools.cache
def ray_args_model(import_path: str):
    """Ray's args class of a DP or P/D builder, or None where it cannot be imported (the builder modules import
    vLLM). Which class and module: serve_config.BUILDER_ARGS, the one table of them."""
    from kuberay_llm.preflight.serve_config import BUILDER_ARGS

    module, name = BUILDER_ARGS[import_path]
    try:
        return getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None


def rule_builder_validators(source, rs: RayServiceFacts, ctx) -> list[Finding]:
    """build_dp_openai_app's and build_pd_openai_app's args through every validator of Ray's own class
    (DPOpenAiServingArgs, PDServingArgs: e.g. "P/D model id mismatch"). Runs after check 3 passed, so only the
    cross-field validators can still fail."""
    from kuberay_llm.preflight import serve_config

    out, obj = [], _obj(rs)
    for app in llm_apps(rs):
        if app.import_path not in (DP, PD):
            continue
        model = ray_args_model(app.import_path)
        name = serve_config.BUILDER_ARGS[app.import_path][1]
        if model is None:
            out.append(Finding(WARNING, source, obj, app.args_path,
                               f"Ray's {name} cannot be imported without vLLM: its validators were not run",
                               "install vLLM (`make setup-local`) to run them offline"))
            continue
        out += serve_config._pydantic(model, copy.deepcopy(app.args), source, obj, app.args_path, name)
    return out


# --- check 4e: cross-field rules ---------------------------------------------------------------------------


def rule_pattern_gpus_fit(source, rs: RayServiceFacts, ctx) -> list[Finding]:
    """A DP group (data_parallel_size x TP x PP GPUs per group) and P/D's two deployments fit the worker groups."""
    out = []
    total = rs.total_gpus
    for app in llm_apps(rs):
        entries = [e for e in app.llm_entries if not e.on_cpu]
        if app.import_path not in (DP, PD) or not entries:
            continue
        need = sum(gpus_of(e, app) for e in entries)
        if need <= total:
            continue
        per_pod = max(1, rs.workers[0].gpus_per_pod if rs.workers else 1)
        last = entries[-1]
        field = f"{last.path}.engine_kwargs.data_parallel_size={data_parallel_size(last)}"
        parts = " and ".join(_what(e, app) for e in entries) + (f": {need} GPUs at once" if len(entries) > 1 else "")
        out.append(Finding(ERROR, source, _obj(rs), field,
                           f"{parts}, but worker group {_groups(rs)} ({total} GPUs): the placement groups would "
                           "wait forever",
                           f"give the worker group {need} {GPU} (maxReplicas {-(-need // per_pod)} pods of "
                           f"{per_pod}), or lower data_parallel_size"))
    return out


def _groups(rs: RayServiceFacts) -> str:
    return ", ".join(f"{w.name} offers {w.gpus_per_pod} {GPU} × {w.max_replicas} pod"
                     + ("s" if w.max_replicas != 1 else "") for w in rs.workers) or "no worker group"


def rule_data_parallel_builder(source, rs: RayServiceFacts, ctx) -> list[Finding]:
    """data_parallel_size > 1 needs a DP builder; the DP builder needs data_parallel_size > 1; DP gangs are PACK."""
    out, obj = [], _obj(rs)
    for app in llm_apps(rs):
        for e in app.llm_entries:
            dp = data_parallel_size(e)
            field = f"{e.path}.engine_kwargs.data_parallel_size={dp}"
            if app.import_path == OPENAI and dp > 1:
                out.append(Finding(ERROR, source, obj, field,
                                   "build_openai_app starts one vLLM engine per replica on tensor_parallel_size × "
                                   "pipeline_parallel_size GPUs and never sets a data-parallel rank",
                                   f"use import_path {DP} with args.llm_config (data-parallel attention)"))
            elif app.import_path == DP and dp == 1:
                out.append(Finding(ERROR, source, obj, field,
                                   f"{NO_GANG}: build_dp_openai_app gang-schedules data_parallel_size replicas, "
                                   "and with 1 there is no gang (Ray's DPServer fails at start)",
                                   f"set data_parallel_size > 1, or use {OPENAI}"))
            if app.import_path in (DP, PD) and dp > 1 and e.placement_strategy:
                out.append(Finding(WARNING, source, obj,
                                   f"{e.path}.placement_group_config.strategy={e.placement_strategy}",
                                   "is ignored: Ray places a DP group as one gang placement group with strategy "
                                   "PACK (DPServer.get_deployment_options)",
                                   "remove strategy (keep the bundles if you need them)"))
    return out


def rule_prefill_decode(source, rs: RayServiceFacts, ctx) -> list[Finding]:
    """Each side's KV connector is one Ray orchestrates; NIXL's decode side has no pipeline parallelism."""
    out, obj = [], _obj(rs)
    backends = kv_connector_backends()
    for app in llm_apps(rs):
        if app.import_path != PD:
            continue
        for e in app.llm_entries:
            kv = e.engine.get("kv_transfer_config")
            if not isinstance(kv, dict):
                continue  # required by PDServingArgs: check 3c says so
            where = f"{e.path}.engine_kwargs.kv_transfer_config"  # vLLM's KVTransferConfig judged it (check 3)
            connector = kv.get("kv_connector")
            if backends and isinstance(connector, str) and connector not in backends:
                out.append(Finding(WARNING, source, obj, f"{where}.kv_connector={connector}",
                                   "is not one of Ray Serve LLM's connector backends "
                                   f"({', '.join(sorted(backends))}): Ray falls back to a backend that sets up "
                                   "nothing for it (kv_transfer/factory.py)",
                                   "use NixlConnector unless the connector needs no orchestration"))
            if connector == "NixlConnector" and e.role == "decode" and kv.get("kv_role") == "kv_consumer" and e.pp > 1:
                out.append(Finding(ERROR, source, obj, f"{e.path}.engine_kwargs.pipeline_parallel_size={e.pp}",
                                   f"{NIXL_DECODE_PP} (vLLM's NIXL connector)",
                                   "give decode tensor or data parallelism instead of pipeline parallelism"))
    return out


def rule_request_routers(source, rs: RayServiceFacts, ctx) -> list[Finding]:
    """A router's kwargs are its initialize_state's; prefix/KV-aware routing needs prefix caching, KV-aware routing
    direct streaming and ai-dynamo; prefix routing over one replica does nothing."""
    out, obj = [], _obj(rs)
    for app in llm_apps(rs):
        for e in app.llm_entries:
            name, path = router_name(e), e.request_router_class
            if not name:
                continue
            where = f"{e.path}.deployment_config.request_router_config"
            config = e.deployment.get("request_router_config") or {}
            kwargs = config.get("request_router_kwargs") or {}
            known = router_kwargs(path)
            if known is not None and isinstance(kwargs, dict):
                for key in kwargs:
                    if key not in known:
                        out.append(Finding(ERROR, source, obj, f"{where}.request_router_kwargs.{key}",
                                           f"is not a parameter of {name}.initialize_state in this Ray",
                                           f"use one of {', '.join(sorted(known)) or '(none)'}"))
            if name in (PREFIX_ROUTER, KV_ROUTER) and e.engine.get("enable_prefix_caching") is False:
                out.append(Finding(ERROR, source, obj, f"{e.path}.engine_kwargs.enable_prefix_caching=false",
                                   f"{name} routes by cached prefixes, but the engine caches none",
                                   "remove enable_prefix_caching: false (vLLM 0.29 turns it on by default)"))
            if name == PREFIX_ROUTER and replica_groups(e) * (data_parallel_size(e) if app.import_path != OPENAI
                                                              else 1) == 1:
                out.append(Finding(WARNING, source, obj, f"{where}.request_router_class={path}",
                                   "routes between replicas, and this deployment has one",
                                   "raise max_replicas (or data_parallel_size), or drop the router"))
            if name == KV_ROUTER:
                if not flag(rs, DIRECT_STREAMING):
                    out.append(Finding(ERROR, source, obj, f"{where}.request_router_class={path}",
                                       "scores replicas in the LLMRouter that only direct streaming deploys; without "
                                       f"{DIRECT_STREAMING}=1 it degrades to load balancing (kv_aware_router.py)",
                                       "add components/high-throughput"))
                if not _runtime_env_installs(rs, "ai-dynamo"):
                    out.append(Finding(ERROR, source, obj, f"{where}.request_router_class={path}",
                                       "needs ai-dynamo (`from dynamo.llm import SelectionService`), which Ray's llm "
                                       "extra and so rayproject/ray-llm do not install (kv_token_tracker.py)",
                                       "add ai-dynamo to the image, or to runtime_env pip"))
    return out


def rule_high_throughput(source, rs: RayServiceFacts, ctx) -> list[Finding]:
    """The high-throughput flags: one value everywhere, in the container env, "1"; direct streaming's limits."""
    out, obj = [], _obj(rs)
    envs = ray_container_envs(rs)
    for name in CLUSTER_FLAGS:
        values = {where: env.get(name) for where, env in envs}
        for where, value in values.items():
            if value is not None and value != "1" and str(value).lower() in ("true", "yes", "on"):
                out.append(Finding(ERROR, source, obj, f"{where}.env.{name}={value}",
                                   "reads as off: Ray turns it on only for the value \"1\"", f"set {name}: \"1\""))
        if len({v == "1" for v in values.values()}) > 1:
            on = [w for w, v in values.items() if v == "1"]
            off = [w for w, v in values.items() if v != "1"]
            out.append(Finding(ERROR, source, obj, f"{off[0]}.env.{name}",
                               f"is on in {', '.join(on)} but not here: the Serve controller, proxies and replicas "
                               "of one cluster would disagree", HIGH_THROUGHPUT_FIX))
    for app in (rs.serve.applications if rs.serve else ()):
        scopes = [(f"{app.path}.runtime_env", app.runtime_env)]
        scopes += [(f"{e.path}.runtime_env", e.runtime_env) for e in app.llm_entries]
        for where, env in scopes:
            variables = env.get("env_vars") if isinstance(env.get("env_vars"), dict) else {}
            for name in CLUSTER_FLAGS:
                if name in variables:
                    out.append(Finding(ERROR, source, obj, f"{where}.env_vars.{name}",
                                       "is read when the Serve controller and the proxies start; a runtime_env "
                                       "reaches only the application's own processes", HIGH_THROUGHPUT_FIX))
    direct, haproxy = flag(rs, DIRECT_STREAMING), flag(rs, HA_PROXY)
    head = envs[0][0] if envs else "spec.rayClusterConfig.headGroupSpec"
    for app in llm_apps(rs):
        args = app.args
        if direct:
            if not haproxy:
                out.append(Finding(ERROR, source, obj, f"{head}.env.{DIRECT_STREAMING}=1",
                                   f"{HAPROXY_REQUIRED} (direct streaming attaches LLMRouter as it)",
                                   f"set {HA_PROXY}: \"1\" as well (components/high-throughput)"))
            configs = args.get("llm_configs")
            if app.import_path == OPENAI and isinstance(configs, list) and len(configs) > 1:
                out.append(Finding(ERROR, source, obj, f"{app.args_path}.llm_configs",
                                   f"has {len(configs)} llm_configs: {DIRECT_ONE_CONFIG}",
                                   "serve one model per application (one application per model), or drop "
                                   "direct streaming"))
            if args.get("ingress_deployment_config"):
                out.append(Finding(ERROR, source, obj, f"{app.args_path}.ingress_deployment_config",
                                   DIRECT_NO_INGRESS_CONFIG,
                                   "remove it; configure the server through the llm_config's deployment_config"))
            cls_config = args.get("ingress_cls_config")
            if isinstance(cls_config, dict) and (cls_config.get("ingress_extra_kwargs") or
                                                 split(str(cls_config.get("ingress_cls") or DEFAULT_INGRESS))[1]
                                                 != DEFAULT_INGRESS):
                out.append(Finding(ERROR, source, obj, f"{app.args_path}.ingress_cls_config", DIRECT_NO_INGRESS_CLS,
                                   "remove ingress_cls_config, or drop direct streaming"))
            if any(e.config.get("lora_config") for e in app.llm_entries) and not flag(rs, FORWARD_BODY):
                lora = next(e for e in app.llm_entries if e.config.get("lora_config"))
                out.append(Finding(ERROR, source, obj, f"{lora.path}.lora_config", DIRECT_LORA,
                                   f"set {FORWARD_BODY}: \"1\" on the head and workers"))
        elif haproxy:
            ingress = args.get("ingress_deployment_config")
            if isinstance(ingress, dict) and ingress.get("request_router_config"):
                out.append(Finding(ERROR, source, obj,
                                   f"{app.args_path}.ingress_deployment_config.request_router_config",
                                   f"{CUSTOM_INGRESS_ROUTER}: HAProxy balances ingress traffic itself",
                                   "route on the LLM deployment (the llm_config's deployment_config) instead"))
    return out


def rule_vllm_pinned(source, rs: RayServiceFacts, ctx) -> list[Finding]:
    """A runtime_env pip/uv entry for vLLM installs exactly the vLLM the pinned Ray requires."""
    pinned = ray_pinned_vllm()
    if pinned is None:
        return []
    out, obj = [], _obj(rs)
    for where, requirement in _runtime_env_requirements(rs):
        parsed = _requirement(requirement)
        if parsed is None or parsed.name.lower() != "vllm":
            continue
        exact = [s.version for s in parsed.specifier if s.operator in ("==", "===")]
        if parsed.url or exact != [pinned] or len(parsed.specifier) != 1:
            out.append(Finding(ERROR, source, obj, f"{where}={requirement}",
                               f"Ray {ctx.get('pinned_ray') or ''} pins vllm=={pinned} exactly (its llm extra); "
                               "this entry would install "
                               + ("another build" if parsed.url else "a different vLLM" if parsed.specifier else
                                  "whatever vLLM is newest") + " over it",
                               f"remove it (the image has vllm {pinned}), or pin vllm=={pinned}"))
    return out


def rule_prefix_routing_marker(source, rs: RayServiceFacts, ctx) -> list[Finding]:
    """components/prefix-routing on a tier whose serve config lacks the marker line: kustomize then appends the
    router to the end of the document, where it is a top-level key Serve rejects. Reads the serve config as parsed
    (it runs even though check 3 failed on exactly that key)."""
    if rs.serve is None or MARKER not in rs.serve.data:
        return []
    return [Finding(ERROR, source, _obj(rs), f"serveConfigV2 {MARKER}",
                    "components/prefix-routing found no marker line in the serve config, so its router landed at "
                    "the top level of the document",
                    f"add `{MARKER}: {{}} # {MARKER}` to the deployment_config of the llm_config to route "
                    "(manifests/components/prefix-routing/kustomization.yaml)")]


# Each reads the cluster side and the serve config (rules.CLUSTER, rules.SERVE), but the marker rule only the
# cluster side: it explains a finding of check 3.
RULES = [(rule, ("cluster", "serve")) for rule in
         (rule_builder_validators, rule_pattern_gpus_fit, rule_data_parallel_builder, rule_prefill_decode,
          rule_request_routers, rule_high_throughput, rule_vllm_pinned)] + [(rule_prefix_routing_marker, ("cluster",))]


# --- facts read from the pinned Ray and vLLM -----------------------------------------------------------------


@functools.cache
def ray_pinned_vllm() -> str | None:
    """The vLLM version ray[llm] requires (vllm[audio]==0.29.0 for Ray 2.60), from the installed Ray's metadata."""
    for text in importlib.metadata.requires("ray") or []:
        parsed = _requirement(text)
        if parsed is not None and parsed.name.lower() == "vllm" and parsed.marker is not None \
                and 'extra == "llm"' in str(parsed.marker):
            exact = [s.version for s in parsed.specifier if s.operator == "=="]
            return exact[0] if exact else None
    return None


def _requirement(text: str):
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        return Requirement(str(text).strip())
    except InvalidRequirement:
        return None


def _runtime_env_requirements(rs: RayServiceFacts) -> list[tuple[str, str]]:
    """(field, requirement) of every pip/uv package list of an application's or llm_config's runtime_env."""
    out = []
    for app in (rs.serve.applications if rs.serve else ()):
        scopes = [(f"{app.path}.runtime_env", app.runtime_env)]
        scopes += [(f"{e.path}.runtime_env", e.runtime_env) for e in app.llm_entries]
        for where, env in scopes:
            for key in ("pip", "uv"):
                packages, at = env.get(key), f"{where}.{key}"
                if isinstance(packages, dict):
                    packages, at = packages.get("packages"), f"{at}.packages"
                if isinstance(packages, list):
                    out += [(f"{at}[{i}]", str(p)) for i, p in enumerate(packages)]
    return out


def _runtime_env_installs(rs: RayServiceFacts, package: str) -> bool:
    wanted = [_requirement(r) for _, r in _runtime_env_requirements(rs)]
    return any(p is not None and p.name.lower() == package for p in wanted)


@functools.cache
def kv_connector_backends() -> frozenset[str]:
    """Ray Serve LLM's registered KV connector backends (BUILTIN_BACKENDS in kv_transfer/factory.py), read from
    the source: importing it loads vLLM."""
    found = _source_file(KV_BACKENDS_MODULE)
    if found is None:
        return frozenset()
    for node in ast.parse(found[0].read_text()).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "BUILTIN_BACKENDS"
                                                for t in node.targets) and isinstance(node.value, ast.Dict):
            return frozenset(k.value for k in node.value.keys if isinstance(k, ast.Constant))
    return frozenset()


@functools.cache
def router_kwargs(path: str) -> frozenset[str] | None:
    """The request_router_kwargs a router class accepts: the parameters of its initialize_state (the names it
    reads from **kwargs when it takes those), found by following its bases through the pinned Ray's source.
    None when the class is not Ray's or cannot be read."""
    module, name = split(path)
    if not module.startswith("ray."):
        return None
    return _initialize_state_params(module, name, 0)


def _initialize_state_params(module: str, name: str, depth: int) -> frozenset[str] | None:
    found = _source_file(module)
    if found is None or depth > 6:
        return None
    tree = ast.parse(found[0].read_text())
    imports = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                imports[alias.asname or alias.name] = (node.module, alias.name)
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name == "initialize_state":
                    return _params(item)
            for base in node.bases:
                base_name = base.id if isinstance(base, ast.Name) else None
                if base_name in imports:
                    return _initialize_state_params(*imports[base_name], depth + 1)
                if base_name:
                    return _initialize_state_params(module, base_name, depth + 1)
            return None
    if name in imports:
        return _initialize_state_params(*imports[name], depth + 1)
    return None


def _params(fn: ast.FunctionDef) -> frozenset[str]:
    names = {a.arg for a in fn.args.args + fn.args.kwonlyargs if a.arg != "self"}
    if fn.args.kwarg is not None:  # **kwargs: the keys it reads
        kw = fn.args.kwarg.arg
        for node in ast.walk(fn):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get" \
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == kw and node.args \
                    and isinstance(node.args[0], ast.Constant):
                names.add(node.args[0].value)
            if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == kw \
                    and isinstance(node.slice, ast.Constant):
                names.add(node.slice.value)
    return frozenset(names)

