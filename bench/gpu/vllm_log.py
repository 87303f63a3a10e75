"""vLLM's own start-up memory accounting, read from its log (the lines vLLM 0.26 prints; each regex quotes
the line it reads). Values are kept as printed: GiB rounded to 2 decimals, tokens, "x" concurrency.

Lines and where vLLM prints them (vllm/v1/worker/gpu_worker.py, gpu_model_runner.py, core/kv_cache_utils.py):
  weights      "Model loading took 14.99 GiB memory and 5.1 seconds"              after the (dummy) load
  profile      "Memory profiling takes 3.2 seconds. Total non KV cache memory: …GiB; torch peak memory
                increase: …GiB; non-torch forward increase memory: …GiB; weights memory: …GiB."
                                                                                   DEBUG level only
  runner       "Using V2 Model Runner"          (the V1 runner prints nothing; vLLM 0.26 picks V2 for dense models)
  cuda graphs  "Profiling CUDA graph memory: PIECEWISE=51 (largest=512), FULL=35 (largest=256)",
               "Estimated PIECEWISE CUDA graph memory: 98.00 MiB first-capture + (51-1) × 4.00 MiB per-graph" (DEBUG),
               "Estimated CUDA graph memory: 0.39 GiB total"          (V1 runner only; V2 subtracts none)
               "… --gpu-memory-utilization=0.9000 is equivalent to --gpu-memory-utilization=0.8893 without
                CUDA graph memory profiling"                                       (the estimate it subtracts)
  kv           "Available KV cache memory: 104.06 GiB", "GPU KV cache size: 757,760 tokens",
               "Maximum concurrency for 8,192 tokens per request: 92.50x"
  summary      "Free memory on device (139.3/139.81 GiB) on startup. Desired GPU memory utilization is (0.9,
                125.83 GiB). Actual usage is 14.99 GiB for weight, 1.22 GiB for peak activation, 0.61 GiB for
                non-torch memory, and 0.56 GiB for CUDAGraph memory. …"           after CUDA graph capture
"""

from __future__ import annotations

import re

F = r"(-?[\d.]+)"
RX = {
    "weights": re.compile(r"Model loading took " + F + r" GiB(?: memory)? and " + F + r" seconds"),
    "profile": re.compile(r"Memory profiling takes " + F + r" seconds\. Total non KV cache memory: " + F +
                          r" ?GiB; torch peak memory increase: " + F + r" ?GiB; non-torch forward increase memory: "
                          + F + r" ?GiB; weights memory: " + F + r" ?GiB"),
    "cg_graphs": re.compile(r"Profiling CUDA graph memory: (.*)$"),
    "cg_equiv": re.compile(r"current --gpu-memory-utilization=" + F + r" is equivalent to "
                           r"--gpu-memory-utilization=" + F),
    "cg_mode": re.compile(r"Estimated (\w+) CUDA graph memory: " + F + r" MiB first-capture \+ \((\d+)-1\) × " + F +
                          r" MiB per-graph"),
    "cg_total": re.compile(r"Estimated CUDA graph memory: " + F + r" GiB total"),
    "cg_pool": re.compile(r"CUDA graph pool memory: " + F + r" GiB \(actual\), " + F + r" GiB \(estimated\)"),
    "kv_gib": re.compile(r"Available KV cache memory: " + F + r" GiB"),
    "kv_tokens": re.compile(r"GPU KV cache size: ([\d,]+) tokens"),
    "max_conc": re.compile(r"Maximum concurrency for ([\d,]+) tokens per request: " + F + r"x"),
    "summary": re.compile(
        r"Free memory on device \(" + F + "/" + F + r" GiB\) on startup\. Desired GPU memory utilization is \(" +
        F + ", " + F + r" GiB\)\. Actual usage is " + F + r" GiB for weight, " + F + r" GiB for peak activation, " +
        F + r" GiB for non-torch memory, and " + F + r" GiB for CUDAGraph memory"),
    "chunked": re.compile(r"Chunked prefill is enabled with max_num_batched_tokens=(\d+)"),
    "engine": re.compile(r"Initializing a V1 LLM engine \(v([\w.+-]+)\) with config: .*?max_seq_len=(\d+)"),
    "runner": re.compile(r"Using (V\d) Model Runner"),
    "attn_backend": re.compile(r"Using (\w+) attention backend"),
    "moe_backend": re.compile(r"Using (\S+) (?:Unquantized )?MoE backend"),
    "block_size": re.compile(r"block_size(?:=| to | )(\d+)"),
}
KEY_LINES = ("engine", "chunked", "runner", "attn_backend", "moe_backend", "weights", "profile", "cg_graphs", "cg_mode",
             "cg_total", "cg_equiv", "cg_pool", "kv_gib", "kv_tokens", "max_conc", "summary")
REPEATED = ("cg_mode", "attn_backend", "moe_backend")  # one line per CUDA graph mode / backend choice


def _num(s: str) -> float:
    return float(s.replace(",", ""))


def key_lines(text: str) -> list[str]:
    """The log lines the numbers come from, verbatim (timestamps and process prefixes trimmed), first of each."""
    out, seen = [], set()
    for line in text.splitlines():
        hits = [(key, m) for key in KEY_LINES
                if (key not in seen or key in REPEATED) and (m := RX[key].search(line))]
        if not hits:
            continue
        seen.update(key for key, _ in hits)
        start = min(m.start() for _, m in hits)
        body = line.split("] ", 1)[1] if "] " in line[:start] else line[start:]
        body = body.strip()[:700]  # the engine line's full config dump is long: its head names the settings
        if body not in out:
            out.append(body)
    return out


def parse(text: str) -> dict:
    """Numbers from a vLLM start-up log (or from key_lines()). Missing lines give missing keys."""
    r: dict = {}
    if m := RX["weights"].search(text):
        r["weights_gib"], r["weights_load_s"] = _num(m[1]), _num(m[2])
    if m := RX["profile"].search(text):
        r["non_kv_cache_gib"], r["peak_activation_gib"] = _num(m[2]), _num(m[3])
        r["non_torch_gib"], r["profile_weights_gib"] = _num(m[4]), _num(m[5])
    if m := RX["cg_graphs"].search(text):
        r["cudagraph_graphs"] = m[1].strip()
    if m := RX["cg_equiv"].search(text):
        r["cudagraph_util"], r["cudagraph_equiv_util"] = _num(m[1]), _num(m[2])
    modes = RX["cg_mode"].findall(text)
    if modes:
        r["cudagraph_modes"] = {mode: {"first_capture_mib": _num(first), "graphs": int(n), "per_graph_mib": _num(per)}
                                for mode, first, n, per in modes}
    if m := RX["cg_total"].search(text):
        r["cudagraph_estimate_gib"] = _num(m[1])
    if m := RX["cg_pool"].search(text):
        r["cudagraph_actual_gib"], r["cudagraph_estimate_gib"] = _num(m[1]), _num(m[2])
    if m := RX["kv_gib"].search(text):
        r["kv_cache_gib"] = _num(m[1])
    if m := RX["kv_tokens"].search(text):
        r["kv_cache_tokens"] = int(_num(m[1]))
    if m := RX["max_conc"].search(text):
        r["concurrency_tokens"], r["max_concurrency"] = int(_num(m[1])), _num(m[2])
    if m := RX["summary"].search(text):
        v = [_num(x) for x in m.groups()]
        r["free_at_start_gib"], r["total_gib"], r["requested_gib"] = v[0], v[1], v[3]
        # the summary repeats the profile's numbers (same rounding): keep them where DEBUG was off
        r.setdefault("peak_activation_gib", v[5])
        r.setdefault("non_torch_gib", v[6])
        r["summary_weights_gib"], r["cudagraph_actual_gib"] = v[4], v[7]
    if m := RX["runner"].search(text):
        r["model_runner"] = m[1]
    if m := RX["engine"].search(text):
        r["vllm_version"], r["max_model_len"] = m[1], int(m[2])
    if m := RX["chunked"].search(text):
        r["max_num_batched_tokens"] = int(m[1])
    for key in ("attn_backend", "moe_backend"):
        found = sorted(set(RX[key].findall(text)))
        if found:
            r[key] = found
    return r
