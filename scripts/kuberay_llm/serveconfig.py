"""The one model of a Ray Serve config: a RayService's spec.serveConfigV2, parsed once into a typed view.

serveConfigV2 is a YAML string that the API server never looks inside. Every command that reasons about it
(validate, plan, local, the harness's smoke test, the chart parity test) reads it through `parse` /
`of_rayservice`, so there is one parser, one set of field paths in messages, and one place that decides what
a wrong type means:

- `parse` raises ServeConfigError (with the field) for what is not a serve config at all: YAML that does not
  parse, a document that is not a mapping, no `applications:` list;
- every typed read below is total: a value of the wrong type reads as absent (never an exception), and
  `LLMEntry.engine_problems` / `Application.args_problems` say what was wrong with it. Ray's own schema
  classes (ray.serve.schema, LLMConfig) judge the whole config in kuberay_llm.preflight.serve_config; the
  validator runs no rule that reads this view unless both found nothing, so a rule never reasons on a value
  of the wrong type.

Field paths read as users write them: `serveConfigV2 llm_configs[0].engine_kwargs.max_model_len` for a
config with one application, `serveConfigV2 applications[1].args.llm_configs[0]...` with several.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import yaml

LLM_BUILDER_PREFIX = "ray.serve.llm:"
ROOT = "serveConfigV2"


class ServeConfigError(ValueError):
    """Not a serve config: `field` says where (`spec.serveConfigV2`), `str(err)` what is wrong."""

    def __init__(self, message: str, field: str = "spec.serveConfigV2"):
        super().__init__(message)
        self.field = field


def _mapping(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: Any) -> int | None:
    """An int as YAML gives it (bools are not ints here), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# --- engine_kwargs: the vLLM arguments the commands reason about ------------------------------------------

# name -> (python type, lower bound or None, what vLLM calls it). Types and bounds are vLLM 0.29's
# (vllm/engine/arg_utils.py EngineArgs fields, vllm/config/{parallel,cache,scheduler,model}.py pydantic
# constraints): tensor/pipeline/data parallel sizes >= 1, max_model_len > 0, max_num_seqs and
# max_num_batched_tokens >= 1, gpu_memory_utilization in (0, 1]. Where vLLM is installed,
# kuberay_llm.vllm_check also checks every other argument against vLLM's own dataclasses.
ENGINE_SETTINGS: dict[str, tuple[type, float | None]] = {
    "tensor_parallel_size": (int, 1),
    "pipeline_parallel_size": (int, 1),
    "data_parallel_size": (int, 1),
    "max_model_len": (int, 1),
    "max_num_seqs": (int, 1),
    "max_num_batched_tokens": (int, 1),
    "gpu_memory_utilization": (float, None),  # (0, 1]: checked below
    "kv_cache_dtype": (str, None),
    "dtype": (str, None),
    "quantization": (str, None),
    "reasoning_parser": (str, None),
    "enable_prefix_caching": (bool, None),
    "enable_expert_parallel": (bool, None),
    "enable_chunked_prefill": (bool, None),
}


def _engine_problem(name: str, value: Any) -> str | None:
    kind, low = ENGINE_SETTINGS[name]
    if value is None and name in ("quantization", "max_model_len", "max_num_seqs", "max_num_batched_tokens"):
        return None  # vLLM's own default
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif kind is int:
        ok = _int(value) is not None
    else:
        ok = isinstance(value, kind)
    if not ok:
        return f"{value!r} is not {'a number' if kind is float else 'an integer' if kind is int else 'a ' + kind.__name__}"
    if name == "gpu_memory_utilization" and not 0 < value <= 1:
        return f"{value!r} is out of range: vLLM takes a fraction of GPU memory in (0, 1]"
    if low is not None and value < low:
        return f"{value!r} is out of range: vLLM needs at least {low:g}"
    return None


@dataclass(frozen=True)
class LLMEntry:
    """One entry of an application's args.llm_configs (a mapping: entries given as file paths are not)."""

    app: str  # application name
    app_index: int
    index: int  # position among the application's LLMConfigs
    # `serveConfigV2 llm_configs[0]`, `serveConfigV2 applications[1].args.llm_configs[0]`, `serveConfigV2
    # prefill_config` (build_pd_openai_app), `serveConfigV2 llm_config` (build_dp_openai_app)
    path: str
    config: dict  # the mapping as written
    key: str = "llm_configs"  # the args key it came from (BUILDER_LLM_ARGS)

    @property
    def role(self) -> str | None:
        """"prefill" or "decode" for build_pd_openai_app's two configs, else None."""
        return self.key.removesuffix("_config") if self.key in ("prefill_config", "decode_config") else None

    @property
    def loading(self) -> dict:
        return _mapping(self.config.get("model_loading_config"))

    @property
    def model_id(self) -> str | None:
        return _text(self.loading.get("model_id"))

    @property
    def model_source(self) -> str | None:
        """The Hugging Face id or path of the weights (model_id when not set); None for a cloud mirror."""
        source = self.loading.get("model_source")
        return _text(source) if source is not None else self.model_id

    @property
    def engine(self) -> dict:
        return _mapping(self.config.get("engine_kwargs"))

    @functools.cached_property
    def engine_problems(self) -> dict[str, str]:
        """engine_kwargs name -> what is wrong with its type or range (for the names in ENGINE_SETTINGS)."""
        return {name: why for name in ENGINE_SETTINGS if name in self.engine
                for why in [_engine_problem(name, self.engine[name])] if why}

    def setting(self, name: str, default: Any = None) -> Any:
        """An engine setting of ENGINE_SETTINGS with its type checked: `default` when unset or invalid."""
        if name not in self.engine or name in self.engine_problems or self.engine[name] is None:
            return default
        return self.engine[name]

    @property
    def tp(self) -> int:
        return self.setting("tensor_parallel_size", 1)

    @property
    def pp(self) -> int:
        return self.setting("pipeline_parallel_size", 1)

    @property
    def gpus_per_replica(self) -> int:
        return self.tp * self.pp

    @property
    def max_model_len(self) -> int | None:
        return self.setting("max_model_len")

    @property
    def reasoning(self) -> bool:
        """engine_kwargs.reasoning_parser set: answers carry `reasoning` (vLLM 0.29) / `reasoning_content`."""
        return bool(self.setting("reasoning_parser"))

    @property
    def accelerator_type(self) -> str | None:
        return _text(self.config.get("accelerator_type"))

    @property
    def on_cpu(self) -> bool:
        return str(_mapping(self.config.get("accelerator_config")).get("kind", "")).lower() == "cpu"

    @property
    def deployment(self) -> dict:
        return _mapping(self.config.get("deployment_config"))

    @property
    def autoscaling(self) -> dict:
        return _mapping(self.deployment.get("autoscaling_config"))

    @property
    def max_replicas(self) -> int | None:
        """The most Serve replicas: autoscaling max_replicas, else an int num_replicas, else None ("auto" or
        unset: Serve's own defaults)."""
        return _int(self.autoscaling.get("max_replicas")) or _int(self.deployment.get("num_replicas"))

    @property
    def placement(self) -> dict:
        return _mapping(self.config.get("placement_group_config"))

    @property
    def placement_strategy(self) -> str | None:
        return _text(self.placement.get("strategy"))

    @property
    def runtime_env(self) -> dict:
        return _mapping(self.config.get("runtime_env"))

    @property
    def env_vars(self) -> dict:
        return _mapping(self.runtime_env.get("env_vars"))

    @property
    def request_router_class(self) -> str | None:
        return _text(_mapping(self.deployment.get("request_router_config")).get("request_router_class"))


@dataclass(frozen=True)
class Application:
    index: int
    raw: Any  # the application as written (a mapping unless the config is broken)
    path: str  # `serveConfigV2 applications[0]`
    args_path: str  # `serveConfigV2 args` (one application) or `serveConfigV2 applications[1].args`
    llm_entries: tuple[LLMEntry, ...] = ()
    args_problems: tuple[tuple[str, str], ...] = ()  # (field, what is wrong) of args.llm_configs

    @property
    def mapping(self) -> dict:
        return _mapping(self.raw)

    @property
    def name(self) -> str:
        return _text(self.mapping.get("name")) or "default"

    @property
    def import_path(self) -> str | None:
        return _text(self.mapping.get("import_path"))

    @property
    def route_prefix(self) -> str | None:
        return _text(self.mapping.get("route_prefix"))

    @property
    def args(self) -> dict:
        return _mapping(self.mapping.get("args"))

    @property
    def runtime_env(self) -> dict:
        return _mapping(self.mapping.get("runtime_env"))

    @property
    def serves_llm(self) -> bool:
        """Built by one of Ray Serve LLM's builders (build_openai_app, build_dp_openai_app, ...)."""
        return (self.import_path or "").startswith(LLM_BUILDER_PREFIX)


@dataclass(frozen=True)
class ServeConfig:
    data: dict  # the parsed document
    applications: tuple[Application, ...] = field(default_factory=tuple)

    @property
    def llm_entries(self) -> list[LLMEntry]:
        return [e for app in self.applications for e in app.llm_entries]

    @property
    def problems(self) -> list[tuple[str, str]]:
        """(field, what is wrong) for the shapes this model reads: args.llm_configs and typed engine_kwargs."""
        out = [p for app in self.applications for p in app.args_problems]
        for e in self.llm_entries:
            out += [(f"{e.path}.engine_kwargs.{name}", why) for name, why in e.engine_problems.items()]
        return out


# Where each Ray Serve LLM builder takes its LLMConfigs in `args` (Ray 2.60: LLMServingArgs, DPOpenAiServingArgs,
# PDServingArgs; preflight/serve_config.py reads their other fields from Ray's source). Any other application whose
# args have an `llm_configs` list (a custom builder around build_openai_app) is read like build_openai_app.
BUILDER_LLM_ARGS = {
    "ray.serve.llm:build_openai_app": ("llm_configs",),
    "ray.serve.llm:build_dp_openai_app": ("llm_config",),
    "ray.serve.llm:build_pd_openai_app": ("prefill_config", "decode_config"),
}
LIST_ARG = "llm_configs"


def llm_arg_names(import_path: str | None) -> tuple[str, ...]:
    return BUILDER_LLM_ARGS.get(import_path or "", (LIST_ARG,))


def _llm_entries(app: Application, single: bool) -> Application:
    args = app.args
    entries, problems = [], []
    prefix = f"{ROOT} " if single else f"{app.args_path}."
    for key in llm_arg_names(app.import_path):
        if key not in args:
            continue
        value = args[key]
        where = f"{app.args_path}.{key}"
        if key == LIST_ARG:
            if not isinstance(value, list):
                problems.append((where, f"is {type(value).__name__}, not a list of llm_configs"))
                continue
            items = [(f"{prefix}{key}[{i}]", f"{where}[{i}]", cfg) for i, cfg in enumerate(value)]
        else:
            items = [(f"{prefix}{key}", where, value)]
        for path, raw_where, cfg in items:
            if isinstance(cfg, dict):
                entries.append(LLMEntry(app.name, app.index, len(entries), path, cfg, key))
            elif not isinstance(cfg, str):  # a str is a path to an LLMConfig file inside the image
                problems.append((raw_where, f"is {type(cfg).__name__}, not an llm_config mapping"))
    return Application(app.index, app.raw, app.path, app.args_path, tuple(entries), tuple(problems))


def from_data(data: Any) -> ServeConfig:
    """The typed view of an already parsed serve config."""
    if not isinstance(data, dict):
        raise ServeConfigError(f"has no `applications:` list (it is {type(data).__name__ if data is not None else 'empty'}, "
                               "not a mapping)")
    apps = data.get("applications")
    if not isinstance(apps, list):
        raise ServeConfigError("has no `applications:` list")
    single = len(apps) == 1
    out = []
    for a, raw in enumerate(apps):
        app = Application(a, raw, f"{ROOT} applications[{a}]",
                          f"{ROOT} args" if single else f"{ROOT} applications[{a}].args")
        out.append(_llm_entries(app, single) if isinstance(raw, dict) else app)
    return ServeConfig(data, tuple(out))


def parse(text: Any) -> ServeConfig:
    """Parse serveConfigV2's text. Raises ServeConfigError for what is not a serve config at all."""
    if not isinstance(text, str):
        raise ServeConfigError(f"is {type(text).__name__ if text is not None else 'not set'}, not a YAML string")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ServeConfigError(f"is not valid YAML: {exc}".replace("\n", " ")) from None
    return from_data(data)


def of_rayservice(obj: dict) -> ServeConfig:
    """The serve config of a rendered RayService object."""
    spec = _mapping(_mapping(obj).get("spec"))
    return parse(spec.get("serveConfigV2"))
