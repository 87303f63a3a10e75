"""The README's measured tables are copies of measured data files: each row must equal the file it cites.

A table that drifts from its data (a re-run, a hand edit) fails here with the row and the value.
"""

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _table_after(heading: str) -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    assert heading in text, f"README.md has no section {heading!r}"
    rows = []
    for line in text[text.index(heading):].splitlines()[1:]:
        if line.startswith("#"):
            break
        if line.startswith("| ") and not line.startswith("| concurrency") and not line.startswith("|---"):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
        elif rows and not line.startswith("|"):
            break
    return rows


def test_high_throughput_table_equals_its_data():
    doc = json.loads((ROOT / "bench/gpu/results/high-throughput-h200.json").read_text())
    summary = doc["summary"]
    rows = _table_after("#### The `high-throughput` component on the same GPU")
    assert len(rows) == len(summary["vllm"]["levels"]), rows
    for row in rows:
        c = int(row[0])

        def level(mode):
            return next(lv for lv in summary[mode]["levels"] if lv["concurrency"] == c)

        want = [c, level("vllm")["output_throughput"],
                level("ray")["output_throughput"], level("ray")["output_throughput_vs_vllm"],
                level("ray-ht")["output_throughput"], level("ray-ht")["output_throughput_vs_vllm"],
                level("vllm")["p50_ttft_ms"], level("ray")["p50_ttft_ms"], level("ray-ht")["p50_ttft_ms"]]
        got = [float(x) for x in row]
        assert got == [float(x) for x in want], f"README row concurrency {c}: {row} but the data says {want}"


def test_high_throughput_runs_saw_haproxy():
    """The high-throughput rows count only if Ray's own logs of that run show HAProxy serving."""
    doc = json.loads((ROOT / "bench/gpu/results/high-throughput-h200.json").read_text())
    ht = [m for m in doc["modes"] if m["mode"] == "ray-ht"]
    assert ht and all(m["seen"]["HAProxy"] and m["seen"]["LLMRouter"] for m in ht)
    assert all(not m["seen"]["HAProxy"] for m in doc["modes"] if m["mode"] == "ray")
