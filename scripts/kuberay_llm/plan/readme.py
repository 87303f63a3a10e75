"""The README's tiers table, generated from the overlays so it cannot drift (tests/test_plan_readme.py).

`python -m kuberay_llm.plan.readme` (or `kuberay-llm plan --markdown-table`) prints the block that
belongs between the README's `<!-- tiers:begin -->` and `<!-- tiers:end -->` markers.
"""

from __future__ import annotations

import sys

from kuberay_llm.plan import patterns
from kuberay_llm.plan.report import plan_overlay
from kuberay_llm.render import overlay_names

BEGIN, END = "<!-- tiers:begin -->", "<!-- tiers:end -->"


def _gpus(entry) -> str:
    if entry.plan is not None:
        inp = entry.plan.inputs
        return f"{inp.tp * inp.pp} x {inp.gpu.name}"
    if entry.not_planned == "not planned: CPU-only":
        return "none (CPU)"
    return f"{entry.gpus_per_worker} x any GPU"


def _concurrency(entry) -> str:
    if entry.plan is None:
        return "CPU-only, not planned" if "CPU-only" in entry.not_planned else "depends on the GPU (`kuberay-llm plan " \
            f"{entry.source.split('/')[-1]} --gpu L4`)"
    result = entry.plan
    text = f"{result.max_concurrency:.1f}x at {result.inputs.max_model_len:,} tokens"
    if result.binding_limit == "max_num_seqs":
        text += f" (max_num_seqs {result.max_num_seqs} binds)"
    return text


def tiers_table() -> str:
    """The Markdown table, one row per llm_config of every overlay."""
    rows = ["| overlay | RayService | model (`model` in requests) | GPUs | nodes | predicted concurrency at max_model_len |",
            "|---|---|---|---|---|---|"]
    for name in overlay_names():
        entries = plan_overlay(name)
        pattern = patterns.tier_cells(name)  # a DP or P/D overlay: one row for all its engines
        for entry in entries[:1] if pattern else entries:
            nodes = entry.workers if entry.workers else 1
            rayservice = entry.rayservice.removeprefix("RayService/")
            gpus, concurrency = pattern or (_gpus(entry), _concurrency(entry))
            rows.append(f"| `{name}` | `{rayservice}` | `{entry.model_source}` (`{entry.model_id}`) | {gpus} "
                        f"| {nodes} | {concurrency} |")
    return "\n".join(rows) + "\n"


def readme_block() -> str:
    return f"{BEGIN}\n{tiers_table()}{END}"


if __name__ == "__main__":
    sys.stdout.write(readme_block() + "\n")
