"""What a RayService serves, read from its serveConfigV2 through the one serve-config model."""

from __future__ import annotations

import dataclasses

from kuberay_llm import serveconfig, smoke


@dataclasses.dataclass(frozen=True)
class Model:
    model_id: str
    model_source: str
    kind: smoke.Kind  # what the smoke checks: reasoning, hybrid, gpt-oss, vision (smoke.kind_of)


def models(rayservice: dict) -> list[Model]:
    """Every LLMConfig of every application with its kind; [] if serveConfigV2 is not Ray Serve LLM's."""
    try:
        config = serveconfig.of_rayservice(rayservice)
    except serveconfig.ServeConfigError:
        return []
    return [Model(e.model_id, e.model_source or e.model_id, smoke.kind_of(e)) for e in config.llm_entries
            if e.model_id]
