"""PNG of one or more concurrency sweeps: output tokens/s, TTFT and TPOT (p50 solid, p99 dashed) against
concurrency, one colour per sweep."""

from __future__ import annotations

from pathlib import Path


def plot(sweeps: list[tuple[str, dict]], path: Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")  # no display
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    panels = ((axes[0], "output tokens/s", [("output_throughput", "-")]),
              (axes[1], "TTFT (ms)", [("p50_ttft_ms", "-"), ("p99_ttft_ms", "--")]),
              (axes[2], "TPOT (ms)", [("p50_tpot_ms", "-"), ("p99_tpot_ms", "--")]))
    for index, (label, sweep) in enumerate(sweeps):
        colour = f"C{index}"
        levels = sweep["levels"]
        x = [lv["concurrency"] for lv in levels]
        for ax, _, series in panels:
            for key, style in series:
                ax.plot(x, [lv.get(key) for lv in levels], style, marker="o", color=colour,
                        label=label if style == "-" else None)
    for ax, ylabel, _ in panels:
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrency")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8)
    axes[1].set_title("p50 solid, p99 dashed", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
