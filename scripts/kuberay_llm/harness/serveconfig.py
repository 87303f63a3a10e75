"""What a RayService serves, read from its serveConfigV2 through the one serve-config model."""

from __future__ import annotations

import dataclasses

from kuberay_llm import serveconfig


@dataclasses.dataclass(frozen=True)
class Model:
    app: str
    model_id: str
    model_source: str
    reasoning: bool  # engine_kwargs.reasoning_parser set: answers carry `reasoning` (vLLM 0.29) / reasoning_content


def models(rayservice: dict) -> list[Model]:
    """Every LLMConfig of every application; [] if serveConfigV2 is not Ray Serve LLM's."""
    try:
        config = serveconfig.of_rayservice(rayservice)
    except serveconfig.ServeConfigError:
        return []
    return [Model(e.app, e.model_id, e.model_source or e.model_id, e.reasoning)
            for e in config.llm_entries if e.model_id]
