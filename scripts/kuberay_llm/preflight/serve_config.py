"""Check 3: every serveConfigV2 against Ray's own schema classes, the Ray version the manifests deploy.

What Serve and Ray Serve LLM would refuse when the operator submits the config, found here first:
- the whole config: `ray.serve.schema.ServeDeploySchema` (unique app names and route prefixes, route prefixes
  starting with "/", import paths, ...), with unknown application keys rejected (Ray ignores them silently);
- each Ray Serve LLM application's args: `LLMServingArgs`' keys, a non-empty list of llm_configs, and each
  llm_config through `LLMConfig` (forbids unknown keys, checks accelerator_type and llm_engine);
- what Ray only checks at deploy time, an hour later on a GPU cluster: `deployment_config` and
  `ingress_deployment_config` through Serve's `DeploymentSchema` (unknown keys and values: num_replicas with
  autoscaling_config, max_ongoing_requests > 0, ...), `autoscaling_config` through Serve's
  `AutoscalingConfig`, `placement_group_config` through Ray Serve LLM's `PlacementGroupConfig`, and the rules
  of `LLMServer.get_deployment_options` / `VLLMEngineConfig` (no placement_group_* in deployment_config, no
  accelerator_type on a CPU accelerator_config);
- the engine settings the rules read (types and ranges, kuberay_llm.serveconfig.ENGINE_SETTINGS) and, where
  vLLM is installed, every engine_kwarg against vLLM's own arguments (kuberay_llm.vllm_check).

Public Ray classes are used where they exist without vLLM: ray.serve.schema and ray.serve.config. Ray's
public `ray.serve.llm.LLMConfig` is a bare subclass of the class imported below, but importing
`ray.serve.llm` loads vLLM (seconds to minutes) and fails where vLLM is not installed; the private import is
kept here, in one place, and tests/test_serveconfig.py checks that the public class still adds nothing.
"""

from __future__ import annotations

import ast
import difflib
import functools
import importlib.util
import logging
import os
from pathlib import Path

from kuberay_llm.preflight.findings import ERROR, WARNING, Finding
from kuberay_llm.preflight.rayservice import RayServiceFacts
from kuberay_llm.serveconfig import ROOT, llm_arg_names

# The pydantic class each Ray Serve LLM builder validates its `args` with (ray/serve/llm/__init__.py in Ray 2.60).
# Their fields are read from the pinned Ray's source (importing them loads vLLM): one source of truth.
BUILDER_ARGS = {
    "ray.serve.llm:build_openai_app": ("ray.llm._internal.serve.core.ingress.builder", "LLMServingArgs"),
    "ray.serve.llm:build_dp_openai_app": ("ray.llm._internal.serve.serving_patterns.data_parallel.builder",
                                          "DPOpenAiServingArgs"),
    "ray.serve.llm:build_pd_openai_app": ("ray.llm._internal.serve.serving_patterns.prefill_decode.builder",
                                          "PDServingArgs"),
}
# LLMServer.get_deployment_options (ray/llm/_internal/serve/core/server/llm_server.py) refuses these.
PLACEMENT_IN_DEPLOYMENT = ("placement_group_bundles", "placement_group_strategy")
_SEE = "see {} in Ray's docs for the fields and types it accepts"


def warm_up() -> None:
    """Import Ray's models now (a second or two; they import vLLM where it is installed)."""
    _ray_models()


@functools.cache
def _ray_models() -> dict:
    # Ray and vLLM log import-time notices (no GPU, no Triton) that say nothing about the config.
    from kuberay_llm.vllm_check import quiet_import

    with quiet_import(VLLM_LOGGING_LEVEL="ERROR"):
        import ray  # noqa: F401 - configures Ray's loggers on import; quieten them after that, before ray.llm loads

        logging.getLogger("ray").setLevel(logging.ERROR)
        from ray.llm._internal.common.placement import PlacementGroupConfig
        from ray.llm._internal.serve.core.configs.llm_config import LLMConfig
    from ray.serve.config import AutoscalingConfig
    from ray.serve.schema import DeploymentSchema, ServeApplicationSchema, ServeDeploySchema

    return {"LLMConfig": LLMConfig, "AutoscalingConfig": AutoscalingConfig, "DeploymentSchema": DeploymentSchema,
            "ServeApplicationSchema": ServeApplicationSchema, "ServeDeploySchema": ServeDeploySchema,
            "PlacementGroupConfig": PlacementGroupConfig}


@functools.cache
def builder_args_fields(import_path: str) -> tuple[str, ...]:
    """The fields of the args class of a Ray Serve LLM builder, read from the pinned Ray's source file."""
    module, cls = BUILDER_ARGS[import_path]
    spec = importlib.util.find_spec("ray")
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*module.split(".")[1:]).with_suffix(".py")
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == cls:
            return tuple(n.target.id for n in node.body
                         if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name))
    raise LookupError(f"{cls} not found in {path}: Ray's builder args moved; update BUILDER_ARGS")


def _unknown(keys, known, source, obj, path, what) -> list[Finding]:
    out = []
    for key in keys:
        if key in known:
            continue
        close = difflib.get_close_matches(str(key), list(known), n=1)
        fix = f"did you mean `{close[0]}`?" if close else f"valid keys: {', '.join(sorted(known))}"
        out.append(Finding(ERROR, source, obj, f"{path}.{key}", f"unknown {what} key", fix))
    return out


def _join(path: str, loc) -> str:
    out = path
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _pydantic(model, data, source, obj, path, name: str | None = None) -> list[Finding]:
    from pydantic import ValidationError

    try:
        model.model_validate(data)
    except ValidationError as exc:
        out = []
        for err in exc.errors(include_url=False, include_input=False):
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = "unknown key (Ray rejects it)"
            out.append(Finding(ERROR, source, obj, _join(path, err["loc"]), msg,
                               _SEE.format(name or model.__name__)))
        return out
    except (TypeError, ValueError, AssertionError, KeyError) as exc:  # a validator that raises plainly
        return [Finding(ERROR, source, obj, path, str(exc) or type(exc).__name__, _SEE.format(name or model.__name__))]
    return []


def check(source: str, rs: RayServiceFacts) -> list[Finding]:
    obj = f"RayService/{rs.name}"
    if rs.serve is None:
        return [Finding(ERROR, source, obj, rs.serve_config_error_field, rs.serve_config_error,
                        "author the serve config as serve-config.yaml and list "
                        "manifests/components/serve-config last in the overlay's components")]
    models = _ray_models()
    findings = []
    app_fields = set(models["ServeApplicationSchema"].model_fields)
    if isinstance(rs.serve.data, dict):  # Serve ignores unknown top-level keys silently
        findings += _unknown(rs.serve.data, set(models["ServeDeploySchema"].model_fields), source, obj, ROOT,
                             "serve config")
    for app in rs.serve.applications:
        if not isinstance(app.raw, dict):
            findings.append(Finding(ERROR, source, obj, app.path, f"is {type(app.raw).__name__}, not a mapping",
                                    "write each application as a mapping with name, route_prefix, import_path"))
            continue
        findings += _unknown(app.raw, app_fields, source, obj, app.path, "application")
        findings += _route_prefix(app.raw, source, obj, app.path)
    findings += _pydantic(models["ServeDeploySchema"], rs.serve.data, source, obj, ROOT)
    findings += [Finding(ERROR, source, obj, where, why, "give it the type Ray Serve LLM expects")
                 for where, why in rs.serve.problems]

    for app in rs.serve.applications:
        if app.import_path not in BUILDER_ARGS:
            continue
        args = app.args
        findings += _unknown(args, set(builder_args_fields(app.import_path)), source, obj, app.args_path,
                             f"{BUILDER_ARGS[app.import_path][1]}")
        for key in llm_arg_names(app.import_path):
            if not args.get(key):
                findings.append(Finding(ERROR, source, obj, f"{app.args_path}.{key}",
                                        "is empty" if key in args else "is missing",
                                        "add one llm_config per model" if key == "llm_configs"
                                        else f"give the {key} LLMConfig"))
        ingress = args.get("ingress_deployment_config")
        if isinstance(ingress, dict):
            findings += _deployment(models, ingress, source, obj, f"{app.args_path}.ingress_deployment_config")
    for entry in rs.llm_entries:
        llm = _pydantic(models["LLMConfig"], _llm_without_imports(entry.config), source, obj, entry.path)
        deployment = entry.config.get("deployment_config")
        if isinstance(deployment, dict):
            precise = _deployment(models, deployment, source, obj, f"{entry.path}.deployment_config")
            if precise:  # LLMConfig's own message for a bad deployment_config does not say which field
                llm = [f for f in llm if f.field != f"{entry.path}.deployment_config"]
            llm += precise
        findings += llm
        if isinstance(deployment, dict):
            for key in PLACEMENT_IN_DEPLOYMENT:
                if key in deployment:
                    findings.append(Finding(ERROR, source, obj, f"{entry.path}.deployment_config.{key}",
                                            "Ray Serve LLM refuses it in deployment_config",
                                            "set the bundles and strategy in placement_group_config instead"))
        placement = entry.config.get("placement_group_config")
        if isinstance(placement, dict):
            findings += _pydantic(models["PlacementGroupConfig"], placement, source, obj,
                                  f"{entry.path}.placement_group_config")
        if entry.accelerator_type and entry.on_cpu:
            findings.append(Finding(ERROR, source, obj, f"{entry.path}.accelerator_type={entry.accelerator_type}",
                                    "cannot be used with accelerator_config kind cpu (Ray Serve LLM refuses it)",
                                    "remove accelerator_type, or the CPU accelerator_config"))
        findings += _engine_kwargs(source, obj, entry)
    return findings


def _route_prefix(app: dict, source, obj, path) -> list[Finding]:
    """Serve checks route_prefix's format only when the controller deploys the app (ApplicationDetails in
    ray/serve/schema.py runs `_route_prefix_format`; ServeApplicationSchema does not): run that check here."""
    value = app.get("route_prefix")
    if not isinstance(value, str):
        return []
    from ray.serve.schema import _route_prefix_format  # no public form of Serve's own rule

    try:
        _route_prefix_format(None, value)
    except ValueError as exc:
        return [Finding(ERROR, source, obj, f"{path}.route_prefix={value}", f"{exc}: Serve refuses it at deploy time",
                        'start it with "/" and end it without one (e.g. "/" or "/v1")')]
    return []


def _llm_without_imports(config: dict) -> dict:
    """An llm_config without the class paths LLMConfig would import while validating (server_cls, the router)."""
    out = dict(config)
    if isinstance(out.get("server_cls"), str):
        out.pop("server_cls")
    if isinstance(out.get("deployment_config"), dict):
        out["deployment_config"] = _without_imports(out["deployment_config"])
    return out


def _without_imports(deployment: dict) -> dict:
    """The options with the router class path left out: RequestRouterConfig imports it to validate (that can
    load vLLM, or any module the config names); import_paths.py resolves it in the pinned Ray's source instead."""
    router = deployment.get("request_router_config")
    if isinstance(router, dict) and isinstance(router.get("request_router_class"), str):
        router = {k: v for k, v in router.items() if k != "request_router_class"}
        return {**deployment, "request_router_config": router}
    return deployment


def _deployment(models, deployment: dict, source, obj, path) -> list[Finding]:
    """A deployment's options as Serve's DeploymentSchema and AutoscalingConfig judge them."""
    schema, autoscaling_config = models["DeploymentSchema"], models["AutoscalingConfig"]
    unknown = _unknown(deployment, set(schema.model_fields) - {"name"}, source, obj, path, "Serve deployment option")
    autoscaling = deployment.get("autoscaling_config")
    if isinstance(autoscaling, dict):
        unknown += _unknown(autoscaling, set(autoscaling_config.model_fields), source, obj,
                            f"{path}.autoscaling_config", "autoscaling_config")
    if unknown:
        return unknown
    out = _pydantic(schema, {**_without_imports(deployment), "name": "deployment"}, source, obj, path,
                    "Serve's DeploymentSchema")
    if isinstance(autoscaling, dict):  # DeploymentSchema takes it as a plain dict
        out += _pydantic(autoscaling_config, autoscaling, source, obj, f"{path}.autoscaling_config")
    return out


def _engine_kwargs(source, obj, entry) -> list[Finding]:
    """vLLM's own check of engine_kwargs, where vLLM is installed (names the typed settings did not flag)."""
    try:
        from kuberay_llm import vllm_check
    except ImportError:
        return []
    try:
        problems = vllm_check.check_engine_kwargs(entry.config)
    except ImportError:  # vLLM itself is not installed
        return []
    findings = []
    for problem in problems:
        text, _, fix = problem.partition("; ")
        field, _, message = text.partition(": ")
        if field.removeprefix("engine_kwargs.") in entry.engine_problems:
            continue
        findings.append(Finding(ERROR, source, obj, f"{entry.path}.{field}", message or text, fix))
    return findings


def not_checked(source: str, rs: RayServiceFacts) -> list[Finding]:
    """Warnings for llm_configs given as file paths: they live in the image and cannot be read offline."""
    out = []
    for app in (rs.serve.applications if rs.serve else ()):
        for key in llm_arg_names(app.import_path):
            value = app.args.get(key)
            named = [(f"{key}[{i}]", v) for i, v in enumerate(value)] if isinstance(value, list) else [(key, value)]
            for where, cfg in named:
                if isinstance(cfg, str):
                    out.append(Finding(WARNING, source, f"RayService/{rs.name}", f"{app.args_path}.{where}={cfg}",
                                       "an llm_config file inside the image: not checked offline",
                                       "inline the llm_config in serve-config.yaml to have it checked"))
    return out
