"""`make e2e-gpu`: the product's own path on this machine's GPU, measured.

    kuberay-llm cluster up (its GPU node: nvidia.com/gpu from nvidia-smi, GPU feature discovery's labels)
    -> the small tier as a generated overlay (Llama-3.1-8B's config.json, random weights: load_format dummy;
       accelerator_type = this GPU as Ray names it)
    -> kuberay-llm validate, apply, wait (HEALTHY), smoke, bench at concurrency 1/8/64 through the serve Service
    -> the same engine settings under standalone `vllm serve` on the same GPU (the ratio)
    -> the same RayService with the high-throughput component
    -> GPU failures through the harness: an accelerator_type this GPU is not, a max_model_len whose KV cache does
       not fit, gpu_memory_utilization above what is free, more GPUs than the node has

Every step appends one JSON row to WORK/results.jsonl (times, verdicts, bench summaries, the vLLM log lines of
the replica, the planner's prediction beside them); `--report` turns the rows into bench/gpu/results/ data.
Steps can run one per call (`--steps up,default`), the cluster staying up between them.

Needs root, NVIDIA GPUs, Ray Serve LLM + vLLM importable by this Python, ./bin's control plane (bench/gpu/
carry.py packs all of it for a machine without network). The weights are random: the text is noise.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "scripts"))

import yaml  # noqa: E402

import vllm_log  # noqa: E402
from kuberay_llm.cluster import gpus  # noqa: E402
from kuberay_llm.cluster.tiny_overlay import gpu_overlay  # noqa: E402
from kuberay_llm.group_guards import guard_op  # noqa: E402
from kuberay_llm.harness.kube import Kube  # noqa: E402

NAME = "llama-8b"  # overlays/small's RayService
NAMESPACE = "default"
MODEL_ID = "my-llama-3.1-8b"
CONCURRENCY = "1,8,64"
# The load of bench/gpu/throughput.py, so the numbers compare with the side-script measurements.
BENCH_ARGS = ["--input-len", "512", "--output-len", "256", "--prompts-per-level", "4", "--min-prompts", "8",
              "--warmups", "8"]
WAIT_TIMEOUT = os.environ.get("E2E_GPU_WAIT_TIMEOUT", "12m")
FAILURE_WAIT_TIMEOUT = os.environ.get("E2E_GPU_FAILURE_TIMEOUT", "4m")
T0 = time.time()


def log(*parts) -> None:
    print(f"[e2e-gpu {time.strftime('%H:%M:%S')} +{time.time() - T0:.0f}s]", *parts, flush=True)


class Run:
    def __init__(self, work: Path):
        self.work = work
        self.cluster = work / "cluster"
        # No node autoscaler adds GPU nodes to the local cluster: an unschedulable pod is final after a minute
        # (the harness's default grace, 3m, leaves a cloud's autoscaler time to add one).
        self.env = {"KUBERAY_LLM_UNSCHEDULABLE_GRACE": "60s", **os.environ,
                    "KUBECONFIG": str(self.cluster / "kubeconfig"), "PYTHONUNBUFFERED": "1"}
        self.rows = work / "results.jsonl"
        self.facts: dict = {}

    def cli(self, *args: str, timeout: float = 1800, check: bool = False) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "kuberay_llm.cli", *args]
        log("$ kuberay-llm", " ".join(args))
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=self.env, cwd=REPO)
        out = (proc.stdout + proc.stderr).strip()
        print("\n".join("    " + line for line in out.splitlines()[-25:]), flush=True)
        if check and proc.returncode != 0:
            raise SystemExit(f"kuberay-llm {' '.join(args)} exited {proc.returncode}")
        return proc

    def kube(self) -> Kube:
        """The harness's client on the local cluster (its kubeconfig is read at connect time)."""
        os.environ["KUBECONFIG"] = self.env["KUBECONFIG"]
        return Kube.connect(NAMESPACE)

    def record(self, row: dict) -> None:
        row = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **row}
        with open(self.rows, "a") as fh:
            fh.write(json.dumps(row) + "\n")

    # -- facts of this machine ---------------------------------------------------------------------------

    def machine(self) -> dict:
        found = gpus.discover()
        if not found:
            raise SystemExit("make e2e-gpu needs NVIDIA GPUs (nvidia-smi lists none)")
        catalog = yaml.safe_load((REPO / "scripts/kuberay_llm/data/gpus.yaml").read_text())["gpus"]
        label = gpus.product_label(found[0].name)
        entry = next((k for k, v in catalog.items() if label in v.get("labels", [])), None)
        ray_type = subprocess.run([sys.executable, "-c", (
            "from ray._private.accelerators import NvidiaGPUAcceleratorManager as m; "
            "print(m.get_current_node_accelerator_type())")], capture_output=True, text=True, timeout=120).stdout.strip()
        versions = subprocess.run([sys.executable, "-c", (
            "import importlib.metadata as m, json\nv = {}\nfor p in ('ray', 'vllm', 'torch', 'transformers'):\n"
            "    try: v[p] = m.version(p)\n    except m.PackageNotFoundError: v[p] = None\nprint(json.dumps(v))")], capture_output=True, text=True, timeout=120).stdout
        driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=30).stdout.split("\n")[0].strip()
        ray_type = ray_type if ray_type not in ("", "None") else None
        return {"gpu": found[0].name, "gpus": len(found), "memory_mib": found[0].memory_mib, "product_label": label, "catalog": entry,
                "ray_accelerator_type": ray_type, "driver": driver, "versions": json.loads(versions or "{}")}

    def model_dir(self) -> Path:
        models = self.work / "m"
        if not (models / "llama8b" / "config.json").exists():
            subprocess.run([sys.executable, str(HERE / "make_models.py"), str(models), "llama8b"], check=True,
                           timeout=300)
        return models / "llama8b"

    # -- steps ---------------------------------------------------------------------------------------------

    def up(self) -> None:
        t = time.time()
        self.cli("cluster", "up", "--dir", str(self.cluster), check=True, timeout=600)
        node = self.kube().request("GET", f"/api/v1/nodes/{gpus.GPU_NODE}")
        labels = {k: v for k, v in node["metadata"]["labels"].items() if k.startswith("nvidia.com/")}
        log("GPU node", gpus.GPU_NODE, "capacity", node["status"]["capacity"].get(gpus.RESOURCE), "labels", labels)
        self.record({"step": "up", "seconds": round(time.time() - t, 1), "machine": self.machine(),
                     "node_capacity": node["status"]["capacity"], "node_labels": labels,
                     "node_taints": node["spec"].get("taints")})

    def overlay(self, variant: str, accelerator: str | None, components=(), engine=None) -> Path:
        out = gpu_overlay("small", self.model_dir(), accelerator, self.work / "overlays" / variant,
                          list(components), engine,
                          {"nvidia.com/gpu.product": self.facts["product_label"], "kubernetes.io/hostname": gpus.GPU_NODE})
        log(f"overlay {variant}: {out} (small + Llama-3.1-8B config.json, RANDOM weights: load_format dummy)")
        print((out / "tiny-model-patch.yaml").read_text()[:1500], flush=True)
        return out

    def watch_status(self, stop: threading.Event, timeline: list) -> None:
        """`kuberay-llm status` every 5 s: each new verdict (and replica start-up) line, with its time since apply."""
        t0, last = time.time(), None
        while not stop.is_set():
            proc = subprocess.run([sys.executable, "-m", "kuberay_llm.cli", "status", NAME, "-n", NAMESPACE],
                                  capture_output=True, text=True, env=self.env, cwd=REPO, timeout=60)
            lines = proc.stdout.strip().splitlines() or [""]
            # the verdict line, and while the replica starts, vLLM's phase (harness/startup.py)
            line = " || ".join([lines[0]] + [l.strip() for l in lines[1:] if l.strip().startswith("replica start-up:")])
            if line != last:
                timeline.append({"t": round(time.time() - t0, 1), "status": line})
                log("status:", line)
                last = line
            stop.wait(5)

    def deploy(self, variant: str, overlay: Path, bench: bool, wait_timeout: str) -> dict:
        row: dict = {"step": variant, "overlay": str(overlay.relative_to(self.work))}
        row["validate_rc"] = self.cli("validate", str(overlay)).returncode
        t_apply = time.time()
        row["apply_rc"] = self.cli("apply", str(overlay), "-n", NAMESPACE).returncode
        stop, timeline = threading.Event(), []
        watcher = threading.Thread(target=self.watch_status, args=(stop, timeline), daemon=True)
        watcher.start()
        wait = self.cli("wait", NAME, "-n", NAMESPACE, "--timeout", wait_timeout)
        row.update(wait_rc=wait.returncode, wait_s=round(time.time() - t_apply, 1),
                   verdict=(wait.stdout + wait.stderr).strip().splitlines()[-3:])
        stop.set()
        watcher.join(timeout=70)
        row["status_timeline"] = timeline
        if wait.returncode == 0:
            t = time.time()
            row["smoke_rc"] = self.cli("smoke", NAME, "-n", NAMESPACE).returncode
            row["first_answer_s"] = round(time.time() - t_apply, 1)
            row["smoke_s"] = round(time.time() - t, 1)
            if bench:
                out = self.work / f"bench-{variant}"
                b = self.cli("bench", NAME, "-n", NAMESPACE, "--concurrency", CONCURRENCY, *BENCH_ARGS,
                             "--out", str(out), timeout=900)
                row["bench_rc"] = b.returncode
                row["bench"] = next((json.loads(p.read_text()) for p in sorted(out.glob("*.json"))), None)
        else:
            row["diagnose"] = self.cli("diagnose", NAME, "-n", NAMESPACE).stdout[-6000:]
        row["pods"] = self.pod_timeline()
        self.capture(variant)
        text = self.replica_log()
        row["vllm"] = vllm_log.parse(text)
        row["vllm_log_lines"] = vllm_log.key_lines(text)[-30:]
        row["vllm_errors"] = [l for l in text.splitlines() if re.search(r"Error|error:|CUDA out of memory", l)][-15:]
        self.record(row)
        self.cli("delete", NAME, "-n", NAMESPACE, "--ignore-not-found", timeout=300)
        self.wait_pods_gone()
        return row

    def capture(self, variant: str) -> None:
        """What the harness saw at the verdict, as tests/data/gpu fixtures hold it: the RayService, its pods, the
        namespace's events, each container's last log lines (replayed by tests/test_gpu_failures.py)."""
        k = self.kube()
        base = f"/api/v1/namespaces/{NAMESPACE}"
        pods = {p["metadata"]["name"]: p for p in k.request("GET", f"{base}/pods")["items"]}
        logs = {}
        for name, pod in pods.items():
            for c in pod["spec"]["containers"]:
                try:
                    logs[f"{name}/{c['name']}"] = k.text(f"{base}/pods/{name}/log",
                                                         [("container", c["name"]), ("tailLines", "80")])
                except Exception:  # noqa: BLE001 - a container not started yet has no log
                    logs[f"{name}/{c['name']}"] = ""
        fixture = {"rayservice": k.get(f"/apis/ray.io/v1/namespaces/{NAMESPACE}/rayservices/{NAME}"), "pods": pods,
                   "events": k.request("GET", f"{base}/events")["items"], "logs": logs}
        out = self.work / "fixtures"
        out.mkdir(exist_ok=True)
        (out / f"{variant}.json").write_text(json.dumps(fixture))

    def pod_timeline(self) -> list[dict]:
        pods = []
        for pod in self.kube().request("GET", f"/api/v1/namespaces/{NAMESPACE}/pods")["items"]:
            conds = {c["type"]: c.get("lastTransitionTime") for c in (pod.get("status") or {}).get("conditions") or []}
            pods.append({"name": pod["metadata"]["name"], "node": pod["spec"].get("nodeName"),
                         "created": pod["metadata"]["creationTimestamp"], "phase": pod["status"].get("phase"),
                         **{k: conds.get(k) for k in ("PodScheduled", "Ready")}})
        return pods

    def replica_log(self) -> str:
        """What the worker pods' Ray processes logged (vLLM runs in the replica's actor: Ray's session logs)."""
        parts = []
        for path in sorted((self.cluster / "pods").glob("*/containers/*/tmp/ray/session_*/logs/*")):
            if "session_latest" not in str(path) and path.is_file() and path.suffix in (".out", ".err", ".log") \
                    and path.stat().st_size < 50_000_000:
                text = path.read_text(errors="replace")
                if "vllm" in text or "VLLM" in text:
                    parts.append(text)
        for path in sorted((self.cluster / "pods").glob("**/*.log")):
            if path.is_file() and "session_" not in str(path) and path.stat().st_size < 50_000_000:
                parts.append(path.read_text(errors="replace"))
        return "\n".join(parts)

    def wait_pods_gone(self, limit: float = 180) -> None:
        end = time.time() + limit
        while time.time() < end and self.pod_timeline():
            time.sleep(2)

    def plan(self, gpu: str | None) -> dict:
        if not gpu:
            return {}
        proc = self.cli("plan", "small", "--gpu", gpu, "--json")
        try:
            return json.loads(proc.stdout)
        except json.JSONDecodeError:
            return {"output": proc.stdout[-2000:]}

    def standalone(self) -> None:
        """The same engine settings under `vllm serve` on the same GPU (bench/gpu/throughput.py's mode)."""
        import throughput
        cfg = throughput.tier_llm_config(str(self.model_dir()))
        row = throughput.mode_vllm(cfg, str(self.model_dir()), str(self.model_dir()), str(self.work),
                                   time.time() + 560)
        self.record({"step": "standalone-vllm", **row})


def report(rows_path: Path, out: Path) -> dict:
    """WORK/results.jsonl -> the data file of bench/gpu/results/: provenance, start-up, ratios, verdicts."""
    rows = {}
    for line in rows_path.read_text().splitlines():
        row = json.loads(line)
        rows[row["step"]] = row  # the last run of each step
    machine = rows["up"]["machine"]

    def levels(sweep: dict | None) -> dict:
        return {str(lv["concurrency"]): {k: round(lv[k], 2) for k in ("output_throughput", "median_ttft_ms",
                                                                    "p99_ttft_ms", "median_tpot_ms") if k in lv}
                for lv in (sweep or {}).get("levels", [])}
    summary = {"provenance": {
        "command": "make e2e-gpu (python3 bench/gpu/e2e_gpu.py --steps " + ",".join(rows) + ")",
        "gpu": machine["gpu"], "driver": machine["driver"], "versions": machine["versions"], "kuberay": "v1.6.2",
        "date": rows["up"]["time"][:10], "model": "Llama-3.1-8B config.json, random weights (load_format dummy)",
        "load": "vllm bench serve, random 512 in / 256 out tokens, ignore_eos, max(8, 4 x concurrency) requests, "
                "8 warm-ups; through kuberay-llm bench's port-forward to <name>-serve-svc:8000",
        "note": "Ray 2.58 / vLLM 0.26 (the newest pair the machine's torch 2.11 takes); the tiers pin 2.60 / 0.29"},
        "cluster_up_s": rows["up"]["seconds"], "node_labels": rows["up"]["node_labels"]}
    for step, row in rows.items():
        if step in ("default", "high-throughput"):
            summary[step] = {"apply_to_healthy_s": row.get("wait_s"), "first_answer_s": row.get("first_answer_s"),
                             "pods": row.get("pods"), "status_timeline": row.get("status_timeline"),
                             "vllm": row.get("vllm"), "levels": levels(row.get("bench"))}
        elif step == "standalone-vllm":
            summary["standalone_vllm"] = {"command": row["command"], "startup_s": row["startup_s"],
                                          "vllm": row.get("memory"), "levels": levels(row.get("sweep"))}
        elif step.startswith("fail-"):
            summary[step] = {"wait_rc": row.get("wait_rc"), "apply_to_verdict_s": row.get("wait_s"),
                             "verdict": (row.get("verdict") or [""])[-1]}
        elif step == "plan-vs-vllm":
            plan = (row.get("plan") or [{}])[0] if isinstance(row.get("plan"), list) else row.get("plan") or {}
            summary["plan_vs_vllm"] = {"plan_kv_cache_tokens": plan.get("kv_cache_tokens"),
                                       "plan_max_concurrency": plan.get("max_concurrency"),
                                       "vllm_kv_cache_tokens": (row.get("vllm") or {}).get("kv_cache_tokens"),
                                       "vllm_max_concurrency": (row.get("vllm") or {}).get("max_concurrency")}
    if "default" in summary and "standalone_vllm" in summary:
        ray, solo = summary["default"]["levels"], summary["standalone_vllm"]["levels"]
        summary["ratios"] = {c: {"output_tokens_per_s": round(ray[c]["output_throughput"] / solo[c]["output_throughput"], 3),
                                 "ttft_p50_overhead_ms": round(ray[c]["median_ttft_ms"] - solo[c]["median_ttft_ms"], 1)}
                             for c in ray if c in solo}
        summary["startup_overhead_s"] = round(summary["default"]["apply_to_healthy_s"]
                                              - summary["standalone_vllm"]["startup_s"], 1)
    out.write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=REPO / ".work" / "e2e-gpu")
    parser.add_argument("--steps", default="up,default,standalone,high-throughput,failures,down",
                        help="comma-separated: up default standalone high-throughput failures "
                             "fail-accelerator fail-kv fail-memory fail-gpus down")
    parser.add_argument("--report", nargs=2, type=Path, metavar=("RESULTS_JSONL", "OUT_JSON"),
                        help="write the data file of a finished run and exit")
    args = parser.parse_args(argv)
    if args.report:
        print(json.dumps(report(*args.report), indent=1)[:4000])
        return 0
    args.work.mkdir(parents=True, exist_ok=True)
    run = Run(args.work)
    steps = args.steps.split(",")
    if "failures" in steps:
        i = steps.index("failures")
        steps[i:i + 1] = ["fail-accelerator", "fail-kv", "fail-memory", "fail-gpus"]
    facts = run.facts = run.machine() if any(s != "down" for s in steps) else {}
    accel = facts.get("ray_accelerator_type") or None
    log("machine:", json.dumps(facts))
    for step in steps:
        log("== step", step)
        if step == "up":
            run.up()
        elif step == "default":
            row = run.deploy("default", run.overlay("default", accel), True, WAIT_TIMEOUT)
            run.record({"step": "plan-vs-vllm", "gpu": facts.get("catalog"), "plan": run.plan(facts.get("catalog")),
                        "vllm": row.get("vllm")})
        elif step == "high-throughput":
            run.deploy("high-throughput", run.overlay("high-throughput", accel, ["high-throughput"]), True,
                       WAIT_TIMEOUT)
        elif step == "standalone":
            run.standalone()
        elif step == "fail-accelerator":  # an accelerator_type this GPU is not: the replica never places
            other = "L4" if accel != "L4" else "A10G"
            run.deploy(step, run.overlay(step, other), False, FAILURE_WAIT_TIMEOUT)
        elif step == "fail-kv":  # the weights fit, the KV cache for max_model_len does not
            # Llama-3.1-8B's bf16 weights are 15 GiB; leave ~4 GiB beside them: ~32k tokens of KV, not 131,072.
            gmu = round(19.5 * 1024 / facts["memory_mib"], 3)
            run.deploy(step, run.overlay(step, accel, engine={"max_model_len": 131072, "gpu_memory_utilization": gmu}),
                       False, FAILURE_WAIT_TIMEOUT)
        elif step == "fail-memory":  # another process holds most of the GPU
            hog = subprocess.Popen([sys.executable, "-c", (
                "import torch, time; free = torch.cuda.mem_get_info()[0]; "
                "x = torch.empty(int(free * 0.6), dtype=torch.uint8, device='cuda'); print('held', x.numel(), flush=True); "
                "time.sleep(900)")], start_new_session=True)
            time.sleep(15)
            try:
                run.deploy(step, run.overlay(step, accel), False, FAILURE_WAIT_TIMEOUT)
            finally:
                hog.kill()
        elif step == "fail-gpus":  # a worker group asking for more GPUs than the node has
            out = run.overlay(step, accel)
            patch = yaml.safe_load((out / "tiny-model-patch.yaml").read_text())
            patch += [guard_op(0, "gpu-group")]  # small's one worker group
            patch += [{"op": "replace", "path": f"/spec/rayClusterConfig/workerGroupSpecs/0/template/spec/containers/0/"
                       f"resources/{kind}/nvidia.com~1gpu", "value": str(facts["gpus"] + 1)}
                      for kind in ("requests", "limits")]
            (out / "tiny-model-patch.yaml").write_text(yaml.safe_dump(patch, sort_keys=False))
            run.deploy(step, out, False, FAILURE_WAIT_TIMEOUT)
        elif step == "down":
            run.cli("cluster", "down", "--dir", str(run.cluster))
        else:
            raise SystemExit(f"unknown step {step!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
