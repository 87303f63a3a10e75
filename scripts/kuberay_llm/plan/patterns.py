"""The planner for Ray Serve LLM's serving patterns: how many vLLM engines an overlay runs and what they hold.

- build_openai_app: one engine per Serve replica, TP x PP GPUs each, one KV cache per replica.
- build_dp_openai_app (data-parallel attention): data_parallel_size engines per DP group, TP x PP GPUs each.
  Every rank holds the attention weights and its own KV cache and scheduler (max_num_seqs is per rank); the
  routed experts are sharded over the TP x DP ranks (weights.layer_params). The deployment's KV capacity and
  concurrency are the rank's times the number of ranks.
- build_pd_openai_app: a prefill and a decode deployment, each one of the above, each with a full copy of the
  weights. Decode holds the KV cache of every running request, so it bounds concurrency; prefill's cache only
  holds prompts until NIXL has moved them.

Each engine is planned with the planner's own accounting (accounting.plan via overlay.plan_input): this module
only counts engines and GPUs. Not modelled: the memory of expert parallelism's all-to-all buffers and of the DP
group's communicators (part of what vLLM profiles as non-torch memory on a GPU cluster).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from kuberay_llm import serveconfig
from kuberay_llm.errors import UserError
from kuberay_llm.plan.accounting import GiB, Plan, plan
from kuberay_llm.plan.catalog import Gpu, find_gpu
from kuberay_llm.plan.overlay import gpu_shape, plan_input, rayservices
from kuberay_llm.render import render_overlay
from kuberay_llm.serveconfig import LLMEntry

DP = "ray.serve.llm:build_dp_openai_app"
PD = "ray.serve.llm:build_pd_openai_app"
LENGTHS = (16384, 32768)  # the request lengths the comparison reports concurrency at
BEGIN, END = "<!-- patterns:begin -->", "<!-- patterns:end -->"


@dataclass
class Side:
    """One deployment of an overlay: `engines` vLLM engines of `plan` (one engine = one DP rank or one replica)."""

    role: str  # "replicas", "DP ranks", "prefill", "decode"
    entry: LLMEntry
    engines: int
    data_parallel: bool
    plan: Plan
    at: dict[int, Plan] = field(default_factory=dict)  # the same engine planned at each of LENGTHS

    @property
    def gpus_per_engine(self) -> int:
        return self.plan.inputs.tp * self.plan.inputs.pp

    @property
    def gpus(self) -> int:
        return self.engines * self.gpus_per_engine

    @property
    def weights_gib_per_gpu(self) -> float:
        return max(s.weights_bytes for s in self.plan.stages) / GiB

    @property
    def kv_tokens(self) -> int:
        return self.engines * self.plan.kv_cache_tokens

    def concurrency(self, length: int) -> float:
        return self.engines * self.at[length].max_concurrency

    @property
    def max_num_seqs(self) -> int:
        return self.engines * self.plan.max_num_seqs

    @property
    def layout(self) -> str:
        inp = self.plan.inputs
        parts = [f"DP {inp.data_parallel_size}"] if self.data_parallel else []
        if inp.tp > 1 or not self.data_parallel:
            parts.append(f"TP {inp.tp}")
        if inp.pp > 1:
            parts.append(f"PP {inp.pp}")
        if inp.expert_parallel:
            parts.append(f"EP {inp.tp * inp.data_parallel_size}")
        return " × ".join(parts)


@dataclass
class PatternPlan:
    overlay: str
    rayservice: str
    import_path: str
    gpu: Gpu
    gpus_in_cluster: int
    gpus_per_node: int
    sides: list[Side]

    @property
    def pattern(self) -> str:
        if self.import_path == PD:
            return "prefill/decode: " + " + ".join(f"{s.role} {s.layout}" for s in self.sides)
        return self.sides[0].layout

    @property
    def gpus(self) -> int:
        return sum(s.gpus for s in self.sides)

    @property
    def serving(self) -> Side:
        """The side whose KV cache holds the running requests: decode under P/D."""
        return next((s for s in self.sides if s.role == "decode"), self.sides[0])

    @property
    def engines(self) -> str:
        return " + ".join(f"{s.engines} {s.role if s.engines != 1 else s.role.removesuffix('s')}"
                          for s in self.sides)


def _engines(entry: LLMEntry, import_path: str) -> tuple[int, bool]:
    groups = entry.max_replicas or 1
    if import_path in (DP, PD):
        dp = entry.setting("data_parallel_size", 1)
        return groups * dp, dp > 1
    return groups, False


def _role(entry: LLMEntry, import_path: str, data_parallel: bool) -> str:
    if entry.role:
        return entry.role
    return "DP ranks" if data_parallel else "replicas"


def plan_patterns(name: str, gpu_override: Gpu | None = None) -> list[PatternPlan]:
    """One PatternPlan per GPU application of an overlay's RayServices."""
    rendered = render_overlay(name)
    services = rayservices(rendered.objects)
    if not services:
        raise UserError(f"{rendered.source}: renders no RayService")
    out = []
    for service in services:
        try:
            config = serveconfig.of_rayservice(service)
        except serveconfig.ServeConfigError as err:
            raise UserError(f"{rendered.source}: {err.field}: {err}") from None
        if config.problems:
            where, why = config.problems[0]
            raise UserError(f"{rendered.source}: {where}: {why} (`kuberay-llm validate {rendered.source}`)")
        for app in config.applications:
            sides, gpu, shape = [], None, None
            for entry in app.llm_entries:
                shape = gpu_shape(service, entry)
                gpu = gpu_override or shape.gpu
                if shape.cpu_only or gpu is None:
                    break
                engines, data_parallel = _engines(entry, app.import_path or "")
                inp = plan_input(entry, gpu)
                side = Side(_role(entry, app.import_path or "", data_parallel), entry, engines, data_parallel,
                            plan(inp))
                side.at = {n: plan(dataclasses.replace(inp, max_model_len=n)) for n in LENGTHS}
                sides.append(side)
            if sides and len(sides) == len(app.llm_entries):
                name_ = (service.get("metadata") or {}).get("name", "?")
                out.append(PatternPlan(rendered.source, f"RayService/{name_}", app.import_path or "", gpu,
                                       shape.gpus_per_worker * shape.workers, shape.gpus_per_worker, sides))
    return out


def uses_pattern(name: str) -> bool:
    """The overlay serves through build_dp_openai_app or build_pd_openai_app."""
    return any(p.import_path in (DP, PD) for p in plan_patterns(name))


def smallest_copy(side: Side) -> tuple[int, Plan] | None:
    """The fewest GPUs of this type that hold one copy of the model and a KV cache for one request of the
    side's max_model_len: data-parallel ranks with expert parallelism for an MoE model (TP 1), else tensor
    parallelism (sizes that divide the attention heads, up to 8 GPUs), else TP 8 x pipeline stages."""
    inp = side.plan.inputs
    model = inp.model
    candidates = []
    if model.moe:
        candidates = [dataclasses.replace(inp, tp=1, pp=1, data_parallel_size=n, expert_parallel=True)
                      for n in range(1, 65)]
    else:
        candidates = [dataclasses.replace(inp, tp=t, pp=1, data_parallel_size=1, expert_parallel=False)
                      for t in (1, 2, 4, 8) if model.attention_heads % t == 0]
        candidates += [dataclasses.replace(inp, tp=8, pp=p, data_parallel_size=1, expert_parallel=False)
                       for p in range(2, 9)]
    for candidate in candidates:
        try:
            result = plan(candidate)
        except UserError:
            continue
        if result.fits and result.max_concurrency >= 1:
            return candidate.tp * candidate.pp * candidate.data_parallel_size, result
    return None


def pd_minimum(p: PatternPlan, gpu: Gpu | None = None) -> str:
    """Why P/D needs the GPUs it asks for: two copies of the smallest layout that holds the model (on the
    overlay's GPU, or on `gpu`)."""
    side = p.serving
    if gpu is not None:
        side = dataclasses.replace(side, plan=dataclasses.replace(
            side.plan, inputs=dataclasses.replace(side.plan.inputs, gpu=gpu)))
    gpu = gpu or p.gpu
    found = smallest_copy(side)
    if found is None:
        return f"one copy of {side.plan.inputs.model.name} does not fit on up to 64 {gpu.name}"
    gpus, result = found
    per_node = max(1, p.gpus_per_node)
    nodes = math.ceil(2 * gpus / per_node)
    return (f"one copy of {result.inputs.model.name} with a KV cache for one {result.inputs.max_model_len:,}-token "
            f"request needs at least {gpus} x {gpu.name} "
            f"({max(s.weights_bytes for s in result.stages) / GiB:.1f} GiB of weights per GPU); prefill + decode "
            f"need two copies: {2 * gpus} GPUs, {nodes} nodes of {per_node}")


# --- output ----------------------------------------------------------------------------------------------


def _rows(plans: list[PatternPlan]) -> list[tuple[str, list[str]]]:
    def cell(fn):
        return [fn(p) for p in plans]

    rows = [
        ("overlay", cell(lambda p: p.overlay.removeprefix("overlays/"))),
        ("pattern", cell(lambda p: p.pattern)),
        ("GPUs", cell(lambda p: f"{p.gpus} x {p.gpu.name}")),
        ("vLLM engines (KV caches)", cell(lambda p: p.engines)),
        ("weights per GPU", cell(lambda p: f"{p.serving.weights_gib_per_gpu:.1f} GiB")),
        ("KV cache per GPU", cell(lambda p: f"{max(0.0, p.serving.plan.binding_stage.kv_bytes) / GiB:.1f} GiB")),
        ("KV tokens (serving side, all engines)", cell(lambda p: f"{p.serving.kv_tokens:,}")),
    ]
    for n in LENGTHS:
        rows.append((f"concurrency at {n:,} tokens", cell(lambda p, n=n: f"{p.serving.concurrency(n):.1f}")))
    rows.append(("max_num_seqs (all engines)", cell(lambda p: f"{p.serving.max_num_seqs:,}")))
    return rows


def comparison_text(plans: list[PatternPlan]) -> str:
    """A side-by-side table: one column per overlay."""
    rows = _rows(plans)
    label_width = max(len(label) for label, _ in rows)
    widths = [max(len(values[i]) for _, values in rows) for i in range(len(plans))]
    lines = [f"{label:<{label_width}}  " + "  ".join(f"{v:<{w}}" for v, w in zip(values, widths)).rstrip()
             for label, values in rows]
    for p in plans:
        if p.import_path == PD:
            lines.append(f"{p.overlay}: {pd_minimum(p)}")
    return "\n".join(lines)


def print_comparison(overlay: str, compare: list[str], gpu: Gpu | None = None) -> None:
    """`kuberay-llm plan OVERLAY [--compare OTHER ...]`: the side-by-side table, printed when asked for or when
    OVERLAY serves through a DP or P/D builder (its per-engine plan above is one DP rank / one side's engine)."""
    plans = plan_patterns(overlay, gpu)
    if not compare and not any(p.import_path in (DP, PD) for p in plans):
        return
    for other in compare:
        plans += plan_patterns(other, gpu)
    if plans:
        print("\nserving patterns (an engine above is one DP rank, one replica or one side's engine):")
        print(comparison_text(plans))


def comparison_markdown(plans: list[PatternPlan]) -> str:
    rows = _rows(plans)
    out = ["| | " + " | ".join(f"`{v}`" for v in rows[0][1]) + " |", "|---" * (len(plans) + 1) + "|"]
    out += [f"| {label} | " + " | ".join(values) + " |" for label, values in rows[1:]]
    return "\n".join(out) + "\n"


def tier_cells(name: str) -> tuple[str, str] | None:
    """(GPUs, predicted concurrency) cells of the README tiers table for a DP or P/D overlay, else None."""
    plans = [p for p in plan_patterns(name) if p.import_path in (DP, PD)]
    if not plans:
        return None
    p = plans[0]
    side, length = p.serving, p.serving.plan.inputs.max_model_len
    text = (f"{side.engines * side.plan.max_concurrency:.1f}x at {length:,} tokens ({side.engines} {side.role} × "
            f"{side.plan.max_concurrency:.1f}x)")
    if side.plan.binding_limit == "max_num_seqs":
        text += f" (max_num_seqs {side.max_num_seqs} binds)"
    return f"{p.gpus} x {p.gpu.name} ({p.engines})", text


README_OVERLAYS = ("large", "large-dp-ep", "large-pd")
BIGGER_GPU = "H200"  # the README also says where P/D fits on the next larger GPU


def readme_block() -> str:
    """The README's "which pattern for which goal" numbers, between BEGIN and END (tests/test_plan_patterns.py)."""
    plans = [plan_patterns(name)[0] for name in README_OVERLAYS]
    text = comparison_markdown(plans)
    notes = [f"- `{p.overlay.removeprefix('overlays/')}`: {pd_minimum(p, gpu)}." for p in plans if p.import_path == PD
             for gpu in (None, find_gpu(BIGGER_GPU))]
    return f"{BEGIN}\n{text}" + ("\n" + "\n".join(notes) + "\n" if notes else "") + END


if __name__ == "__main__":
    print(readme_block())
