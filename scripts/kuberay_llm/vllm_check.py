"""vLLM's own view of an LLMConfig's engine_kwargs: unknown names and values of the wrong type or range.

Ray Serve LLM splits `engine_kwargs` into vLLM's `FrontendArgs` and `AsyncEngineArgs` fields and rejects
any other name ("Unknown engine argument", ray/llm/_internal/serve/engines/vllm/vllm_models.py) only
when the replica starts, on the GPU node. This check does the same offline, and also checks each value
against the field's type in vLLM (`AsyncEngineArgs`) and the range of the vLLM config field it sets
(`CacheConfig.gpu_memory_utilization` is `gt=0, le=1`, ...), without building an engine config (which
would fetch the model's config from the hub). It needs vLLM installed (`make setup-local`); without it
`check_engine_kwargs` returns no problems and `vllm_available()` is False.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import functools
import importlib.util
import os
import re
import sys
import typing
from typing import Annotated, Any

# Ray Serve LLM sets these from model_loading_config (vllm_models.py get_initialization_kwargs).
SET_BY_RAY = {"model": "model_loading_config.model_source", "served_model_name": "model_loading_config.model_id"}
# The vLLM config classes whose pydantic fields carry the value constraints, most specific first.
CONFIG_CLASSES = ("ModelConfig", "CacheConfig", "ParallelConfig", "SchedulerConfig", "LoadConfig",
                  "StructuredOutputsConfig", "ReasoningConfig", "ObservabilityConfig", "LoRAConfig",
                  "MultiModalConfig", "SpeculativeConfig")


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


@dataclasses.dataclass(frozen=True)
class _Field:
    name: str
    type: Any  # the AsyncEngineArgs / FrontendArgs annotation, or None when it cannot be resolved
    constraint: Any  # Annotated[type, *constraints] from the vLLM config class, or None


@contextlib.contextmanager
def quiet_import(**env: str):
    """`env` (vLLM's logging switches) in os.environ only while vLLM is imported for checking, where the caller has
    not set them: left set, they reached every process started later from this one (`local`'s Ray head, whose
    engine then logged none of its start-up lines)."""
    added = [name for name in env if name not in os.environ]
    os.environ.update({name: env[name] for name in added})
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


@functools.cache
def _fields() -> dict[str, _Field]:
    with quiet_import(VLLM_CONFIGURE_LOGGING="0"):  # an import for checking should not log
        import vllm.config
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.entrypoints.launchers.cli_args import FrontendArgs

    constraints: dict[str, Any] = {}
    for class_name in CONFIG_CLASSES:
        for name, info in (getattr(getattr(vllm.config, class_name, None), "__pydantic_fields__", None) or {}).items():
            if info.metadata and name not in constraints:
                constraints[name] = Annotated[(info.annotation, *info.metadata)]
    fields = {}
    for cls in (AsyncEngineArgs, FrontendArgs):
        namespace = vars(sys.modules[cls.__module__])
        for field in dataclasses.fields(cls):
            annotation = field.type
            if isinstance(annotation, str):
                try:
                    annotation = eval(annotation, namespace)  # noqa: S307 - vLLM's own annotation text
                except Exception:  # names only imported under TYPE_CHECKING: skip the type check
                    annotation = None
            fields.setdefault(field.name, _Field(field.name, annotation, constraints.get(field.name)))
    return fields


@functools.cache
def _adapter(annotation: Any):
    import pydantic

    try:
        return pydantic.TypeAdapter(annotation)
    except Exception:  # e.g. torch.dtype: no schema, so no check
        return None


def _type_error(annotation: Any, value: Any, strict: bool) -> str | None:
    import pydantic

    adapter = _adapter(annotation)
    if adapter is None:
        return None
    try:
        adapter.validate_python(value, strict=strict)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        message = first["msg"][0].lower() + first["msg"][1:]
        keys = [str(part) for part in first.get("loc", ()) if isinstance(value, dict) and part in value]
        return f"{message} at {keys[-1]}" if keys else message
    return None


def _type_name(annotation: Any) -> str:
    if typing.get_origin(annotation) is typing.Literal:
        return "choice"
    text = getattr(annotation, "__name__", None) or str(annotation)
    return re.sub(r"\b(?:[A-Za-z_]\w*\.)+(\w+)", r"\1", text)  # vllm.config.x.KVTransferConfig -> KVTransferConfig


def _reasoning_parsers() -> set[str] | None:
    try:
        from vllm.reasoning import ReasoningParserManager
    except ImportError:
        return None
    for attr in ("reasoning_parsers", "_reasoning_parsers", "lazy_parsers", "_lazy_parsers"):
        names = getattr(ReasoningParserManager, attr, None)
        if isinstance(names, dict) and names:
            return set(names)
    return None


def check_engine_kwargs(llm_config: dict) -> list[str]:
    """Problems in `llm_config["engine_kwargs"]` as vLLM sees them, one line each, or [] (also without vLLM).

    Each line reads `engine_kwargs.<name>: <what is wrong>; <fix>`.
    """
    engine_kwargs = (llm_config or {}).get("engine_kwargs") or {}
    if not isinstance(engine_kwargs, dict) or not vllm_available():
        return []
    fields = _fields()
    problems = []
    for name, value in engine_kwargs.items():
        if name in SET_BY_RAY:
            problems.append(f"engine_kwargs.{name}: Ray Serve LLM sets it; set {SET_BY_RAY[name]} instead")
            continue
        field = fields.get(name)
        if field is None:
            close = difflib.get_close_matches(name, list(fields), n=1, cutoff=0.75)
            fix = f"did you mean {close[0]}?" if close else "remove it (see `vllm serve --help` for the engine args)"
            problems.append(f"engine_kwargs.{name}: not a vLLM engine argument (vLLM {_vllm_version()}); {fix}")
            continue
        if field.type is not None:
            # Strict: YAML gives real bools and numbers, so "true" or "0.9" in quotes is a mistake here.
            error = _type_error(field.type, value, strict=True)
            if error and isinstance(value, dict):
                # Nested configs (compilation_config, kv_transfer_config, ...) are given as mappings,
                # which vLLM turns into its config dataclass: validate the mapping against it.
                error = _type_error(field.type, value, strict=False)
            if error:
                problems.append(f"engine_kwargs.{name}: {value!r} is not a valid {_type_name(field.type)} "
                                f"({error}); give a value of that type")
                continue
        if field.constraint is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
            error = _type_error(field.constraint, value, strict=False)
            if error:
                problems.append(f"engine_kwargs.{name}: {value!r} is out of range ({error}); "
                                "use a value vLLM accepts")
                continue
        if name == "reasoning_parser" and isinstance(value, str):
            known = _reasoning_parsers()
            if known and value not in known:
                problems.append(f"engine_kwargs.reasoning_parser: {value!r} is not a vLLM reasoning parser; "
                                f"use one of {', '.join(sorted(known))}")
    return problems


def _vllm_version() -> str:
    import vllm

    return getattr(vllm, "__version__", "?")
