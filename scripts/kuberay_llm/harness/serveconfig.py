"""What a RayService serves, read from its serveConfigV2 (a YAML string the API server never parses)."""

from __future__ import annotations

import dataclasses

import yaml


@dataclasses.dataclass(frozen=True)
class Model:
    app: str
    model_id: str
    model_source: str
    reasoning: bool  # engine_kwargs.reasoning_parser set: answers carry reasoning_content


def models(rayservice: dict) -> list[Model]:
    """Every LLMConfig of every application; [] if serveConfigV2 is not Ray Serve LLM's."""
    try:
        config = yaml.safe_load((rayservice.get("spec") or {}).get("serveConfigV2") or "") or {}
    except yaml.YAMLError:
        return []
    found = []
    for app in config.get("applications") or []:
        args = app.get("args") or {}
        for llm in args.get("llm_configs") or []:
            if not isinstance(llm, dict):
                continue
            loading = llm.get("model_loading_config") or {}
            model_id = loading.get("model_id")
            if model_id:
                reasoning = bool((llm.get("engine_kwargs") or {}).get("reasoning_parser"))
                found.append(Model(app.get("name", "?"), model_id, loading.get("model_source") or model_id, reasoning))
    return found
