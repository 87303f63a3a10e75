"""`kuberay-llm size --emit DIR`: the overlay `validate` accepts, `plan` reads back as the configuration `size`
chose, and preflight's cold-start warnings (ray.io/initializing-timeout, the harness's wait timeout)."""

from __future__ import annotations

import json

import pytest
import yaml

from kuberay_llm import cli, exitcodes
from kuberay_llm.plan import coldstart
from kuberay_llm.plan.catalog import find_gpu, find_model
from kuberay_llm.plan.report import plan_overlay
from kuberay_llm.preflight import cold_start
from kuberay_llm.preflight.rayservice import facts
from kuberay_llm.render import render_overlay
from overlay_helpers import validate

ARGS = ["--model", "Qwen/Qwen2.5-32B-Instruct", "--input-len", "512", "--output-len", "256", "--ttft-p90", "2",
        "--tpot-p50", "0.05", "--rps", "5", "--gpu", "H100-80GB", "--json"]


@pytest.fixture(scope="module")
def emitted(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("sized") / "qwen32b"
    assert cli.main(["size", *ARGS, "--emit", str(out_dir)]) == 0
    return out_dir


@pytest.fixture(scope="module")
def chosen(emitted):
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert cli.main(["size", *ARGS]) == 0
    return json.loads(buffer.getvalue())["feasible"][0]


@pytest.mark.fast
def test_plan_reads_back_the_configuration_size_chose(emitted, chosen):
    [entry] = plan_overlay(str(emitted))
    result = entry.plan
    assert result.inputs.gpu.name == chosen["gpu"]
    assert result.inputs.tp == chosen["tensor_parallel_size"]
    assert result.max_num_seqs == chosen["max_num_seqs"]
    assert result.max_num_batched_tokens == chosen["max_num_batched_tokens"]
    assert result.inputs.max_model_len == chosen["max_model_len"]
    assert result.kv_cache_tokens == chosen["kv_cache_tokens"]
    assert entry.gpus_per_worker == chosen["tensor_parallel_size"]
    assert entry.workers == chosen["replicas"]


@pytest.mark.fast
def test_the_overlay_is_thin_and_its_timeout_covers_the_predicted_cold_start(emitted, chosen):
    assert sorted(p.name for p in emitted.iterdir()) == ["initializing-timeout.yaml", "kustomization.yaml",
                                                         "rayservice-name.yaml", "serve-config.yaml",
                                                         "worker-gpus.yaml"]
    kustomization = yaml.safe_load((emitted / "kustomization.yaml").read_text())
    assert kustomization["resources"][0].endswith("manifests/base")
    [patch] = yaml.safe_load((emitted / "initializing-timeout.yaml").read_text())
    minutes = int(patch["value"].removesuffix("m"))
    cold = coldstart.predict(find_model("Qwen/Qwen2.5-32B-Instruct"), find_gpu(chosen["gpu"]),
                             tp=chosen["tensor_parallel_size"], pp=1, model_source="Qwen/Qwen2.5-32B-Instruct")
    assert minutes * 60 >= cold.seconds


@pytest.mark.fast
def test_emit_refuses_a_directory_with_other_files(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    code = cli.main(["size", *ARGS, "--emit", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == exitcodes.USAGE
    assert err.strip() == (f"error: --emit {tmp_path}: the directory holds other files (notes.txt); give a new or "
                           "empty directory (or one a previous --emit wrote)")


@pytest.mark.fast
def test_emit_with_nothing_feasible_writes_nothing(tmp_path, capsys):
    out_dir = tmp_path / "none"
    args = [a if a != "0.05" else "0.0001" for a in ARGS]
    code = cli.main(["size", *args, "--emit", str(out_dir)])
    err = capsys.readouterr().err
    assert code == exitcodes.USAGE
    assert err.strip() == (f"error: --emit {out_dir}: no configuration meets the targets, nothing to write; relax "
                           "--ttft-p90 / --tpot-p50 or allow more GPU types")
    assert not out_dir.exists()


@pytest.mark.slow  # the whole preflight: Ray's and vLLM's models (15 s)
def test_validate_accepts_the_overlay_without_a_cold_start_warning(emitted, capsys, monkeypatch):
    monkeypatch.delenv("KUBERAY_LLM_WAIT_TIMEOUT", raising=False)
    code, out = validate(capsys, emitted)
    assert code == 0, out
    assert "0 error(s)" in out
    assert "predicted cold start" not in out


@pytest.mark.fast
def test_preflight_warns_when_the_timeouts_are_below_the_predicted_cold_start(emitted, chosen, monkeypatch):
    copy = emitted.parent / "short-timeouts"  # a sibling: the overlay's relative paths to the base still hold
    copy.mkdir()
    for path in emitted.iterdir():
        copy.joinpath(path.name).write_text(path.read_text())
    (copy / "initializing-timeout.yaml").write_text(yaml.safe_dump(
        [{"op": "replace", "path": "/metadata/annotations/ray.io~1initializing-timeout", "value": "2m"}]))
    monkeypatch.setenv("KUBERAY_LLM_WAIT_TIMEOUT", "90s")
    [rayservice] = [o for o in render_overlay(str(copy)).objects if o["kind"] == "RayService"]
    findings = cold_start.rule_timeouts_cover_the_cold_start(str(copy), facts(rayservice), None)
    cold = coldstart.predict(find_model("Qwen/Qwen2.5-32B-Instruct"), find_gpu(chosen["gpu"]),
                             tp=chosen["tensor_parallel_size"], pp=1, model_source="Qwen/Qwen2.5-32B-Instruct")
    whole_minutes, seconds = divmod(round(cold.seconds), 60)
    minutes = f"{whole_minutes}m{seconds}s" if seconds else f"{whole_minutes}m"
    suggest = f"{-(-cold.seconds * 1.5 // 60):.0f}m"
    name = "RayService/qwen2-5-32b-instruct"
    assert [str(f) for f in findings] == [
        f"{copy}: {name}: metadata.annotations.ray.io/initializing-timeout=2m: below the predicted cold start of "
        f"{minutes} (apply -> HEALTHY): KubeRay marks the RayService InitializingTimeout before it can serve; fix: "
        f"raise it to {suggest} or more (`kuberay-llm plan {copy}` prints the estimate's terms)",
        f"{copy}: {name}: KUBERAY_LLM_WAIT_TIMEOUT: the harness's wait timeout 1m30s is below the predicted cold "
        f"start of {minutes}: `kuberay-llm wait` gives up before the RayService can serve; fix: export "
        f"KUBERAY_LLM_WAIT_TIMEOUT={suggest}"]
    assert {f.severity for f in findings} == {"warning"}


@pytest.mark.fast
def test_no_cold_start_warning_when_the_timeouts_cover_it(emitted, monkeypatch):
    monkeypatch.delenv("KUBERAY_LLM_WAIT_TIMEOUT", raising=False)
    [rayservice] = [o for o in render_overlay(str(emitted)).objects if o["kind"] == "RayService"]
    assert cold_start.rule_timeouts_cover_the_cold_start(str(emitted), facts(rayservice), None) == []
