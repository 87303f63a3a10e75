"""Check 3: every serveConfigV2 against Ray's own models, the Ray version the manifests deploy.

- the config as a whole: `ray.serve.schema.ServeDeploySchema`, with unknown application keys rejected
  (Ray ignores them silently);
- each application's args: `LLMServingArgs` (its keys) and `LLMConfig` per llm_config, which forbid
  unknown keys;
- what Ray only checks at deploy time, an hour later on a GPU cluster: unknown keys and bad values in
  `deployment_config` (Serve's DeploymentSchema) and `deployment_config.autoscaling_config`
  (Serve's AutoscalingConfig);
- engine_kwargs against vLLM's own arguments when vLLM is installed (kuberay_llm.vllm_check).
"""

from __future__ import annotations

import difflib
import functools
import logging
import os

from kuberay_llm.preflight.findings import ERROR, Finding
from kuberay_llm.preflight.rayservice import RayServiceFacts

LLM_IMPORT_PATHS = ("ray.serve.llm:build_openai_app",)
# LLMServingArgs' fields in Ray 2.60. Ray's own class needs vLLM to import; when vLLM is installed it is
# used instead, and tests/test_preflight.py checks that this list still matches it.
LLM_SERVING_ARGS_FIELDS = ("llm_configs", "ingress_cls_config", "ingress_deployment_config")


def warm_up() -> None:
    """Import Ray's models now (seconds: they import vLLM where it is installed)."""
    _ray_models()


@functools.cache
def _ray_models():
    # Ray and vLLM log import-time notices (no GPU, no Triton) that say nothing about the config.
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    logging.getLogger("ray").setLevel(logging.ERROR)
    from ray.llm._internal.serve.core.configs.llm_config import LLMConfig
    from ray.serve.config import AutoscalingConfig
    from ray.serve.schema import DeploymentSchema, ServeApplicationSchema, ServeDeploySchema

    return LLMConfig, AutoscalingConfig, DeploymentSchema, ServeApplicationSchema, ServeDeploySchema


def llm_serving_args_fields(keys=()) -> tuple[str, ...]:
    """LLMServingArgs' fields. Ray's class is imported only when `keys` has one outside the pinned list:
    importing it loads vLLM's OpenAI server (~15 s), which a valid config never needs."""
    if all(k in LLM_SERVING_ARGS_FIELDS for k in keys):
        return LLM_SERVING_ARGS_FIELDS
    try:
        from ray.serve.llm import LLMServingArgs
    except ImportError:  # vLLM not installed: Ray's builder module cannot import
        return LLM_SERVING_ARGS_FIELDS
    return tuple(LLMServingArgs.model_fields)


def _unknown(keys, known, source, obj, path, what) -> list[Finding]:
    out = []
    for key in keys:
        if key in known:
            continue
        close = difflib.get_close_matches(str(key), list(known), n=1)
        fix = f"did you mean `{close[0]}`?" if close else f"valid keys: {', '.join(sorted(known))}"
        out.append(Finding(ERROR, source, obj, f"{path}.{key}", f"unknown {what} key", fix))
    return out


def _pydantic(model, data, source, obj, path) -> list[Finding]:
    from pydantic import ValidationError

    try:
        model.model_validate(data)
    except ValidationError as exc:
        out = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = "unknown key (Ray rejects it)"
            out.append(Finding(ERROR, source, obj, f"{path}.{loc}" if loc else path, msg,
                               f"see {model.__name__} in Ray's docs for the fields and types it accepts"))
        return out
    except (TypeError, ValueError) as exc:
        return [Finding(ERROR, source, obj, path, str(exc), "")]
    return []


def check(source: str, rs: RayServiceFacts) -> list[Finding]:
    obj = f"RayService/{rs.name}"
    if rs.serve_config is None:
        return [Finding(ERROR, source, obj, "spec.serveConfigV2", rs.serve_config_error,
                        "author the serve config as serve-config.yaml and list "
                        "manifests/components/serve-config last in the overlay's components")]
    LLMConfig, AutoscalingConfig, DeploymentSchema, ServeApplicationSchema, ServeDeploySchema = _ray_models()
    findings = []
    app_fields = set(ServeApplicationSchema.model_fields)
    for a, app in enumerate(rs.applications):
        if not isinstance(app, dict):
            findings.append(Finding(ERROR, source, obj, f"serveConfigV2 applications[{a}]", "is not a mapping"))
            continue
        findings += _unknown(app, app_fields, source, obj, f"serveConfigV2 applications[{a}]", "application")
    top = {k: v for k, v in rs.serve_config.items()}
    findings += _pydantic(ServeDeploySchema, top, source, obj, "serveConfigV2")

    for a, app in enumerate(rs.applications):
        if not isinstance(app, dict) or app.get("import_path") not in LLM_IMPORT_PATHS:
            continue
        args = app.get("args") or {}
        prefix = "serveConfigV2 args" if len(rs.applications) == 1 else f"serveConfigV2 applications[{a}].args"
        findings += _unknown(args, set(llm_serving_args_fields(args)), source, obj, prefix, "LLMServingArgs")
        if not args.get("llm_configs"):
            findings.append(Finding(ERROR, source, obj, f"{prefix}.llm_configs", "is empty",
                                    "add one llm_config per model"))
    deployment_fields = set(DeploymentSchema.model_fields) - {"name"}
    autoscaling_fields = set(AutoscalingConfig.model_fields)
    for entry in rs.llm_entries:
        findings += _pydantic(LLMConfig, entry.config, source, obj, entry.path)
        deployment = entry.config.get("deployment_config") or {}
        if isinstance(deployment, dict):
            findings += _unknown(deployment, deployment_fields, source, obj,
                                 f"{entry.path}.deployment_config", "Serve deployment option")
            autoscaling = deployment.get("autoscaling_config")
            if isinstance(autoscaling, dict):
                path = f"{entry.path}.deployment_config.autoscaling_config"
                unknown = _unknown(autoscaling, autoscaling_fields, source, obj, path, "autoscaling_config")
                findings += unknown or _pydantic(AutoscalingConfig, autoscaling, source, obj, path)
        findings += _engine_kwargs(source, obj, entry)
    return findings


def _engine_kwargs(source, obj, entry) -> list[Finding]:
    """vLLM's own check of engine_kwargs, where vLLM is installed."""
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
        findings.append(Finding(ERROR, source, obj, f"{entry.path}.{field}", message or text, fix))
    return findings
