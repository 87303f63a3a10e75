"""Render a Helm chart (charts/ray-llm) with the pinned helm, so `kuberay-llm validate --chart` runs the same
preflight on a chart scenario as on an overlay."""

from __future__ import annotations

import os
from pathlib import Path

from kuberay_llm import toolchain
from kuberay_llm.errors import UserError
from kuberay_llm.render import Rendered, display_name, parse_objects

# Fixed release name and namespace: names then come from the values (fullnameOverride), not from who renders.
RELEASE_NAME = "ray-llm"
NAMESPACE = "default"


def render_chart(chart_dir: str | os.PathLike, values_file: str | os.PathLike | None = None) -> Rendered:
    """`helm template` of `chart_dir` with `values_file` (the chart defaults when None).

    The source is named `<chart> (<values>)` in findings, e.g. `charts/ray-llm (ci/large-values.yaml)`.
    A schema or template failure becomes a ToolError carrying helm's message.
    """
    chart = Path(chart_dir)
    if not (chart / "Chart.yaml").is_file():
        raise UserError(f"{chart_dir}: not a Helm chart (no Chart.yaml there)")
    args: list[str | os.PathLike] = [toolchain.tool("helm"), "template", RELEASE_NAME, chart,
                                     "--namespace", NAMESPACE]
    source = display_name(chart)
    if values_file is not None:
        values = Path(values_file)
        if not values.is_file():
            raise UserError(f"{values_file}: no such values file")
        args += ["--values", values]
        try:
            shown = values.resolve().relative_to(chart.resolve())
        except ValueError:
            shown = Path(display_name(values))
        source = f"{source} ({shown})"
    text = toolchain.run_tool(args, what=source)
    return Rendered(source=source, objects=parse_objects(text, source), text=text,
                    image_setting="the chart values image.tag")
