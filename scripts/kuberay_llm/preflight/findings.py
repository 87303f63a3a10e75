"""What a preflight check reports: one problem, located precisely enough to fix without reading code."""

from __future__ import annotations

from dataclasses import dataclass

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True)
class Finding:
    severity: str  # ERROR fails validation, WARNING is printed only
    source: str  # overlay or file: `overlays/medium`, `rendered.yaml`, `-`
    obj: str  # `RayService/llama-70b`
    field: str  # `serveConfigV2 llm_configs[0].engine_kwargs.tensor_parallel_size=8`
    message: str  # what is wrong
    fix: str = ""  # what to change

    def __str__(self) -> str:
        where = ": ".join(part for part in (self.source, self.obj, self.field) if part)
        text = f"{where}: {self.message}"
        return f"{text}; fix: {self.fix}" if self.fix else text
