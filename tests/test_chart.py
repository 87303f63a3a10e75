"""charts/ray-llm: lint, strict values schema, cross-field rules, names, NOTES, and the optional features
(A3 Mega, monitoring, HF token) against the kustomize components they mirror."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest
import yaml

from test_chart_parity import CHART, REPO, RELEASE, TIERS, _tool, comparable_rayservice, differences

SCENARIOS = sorted(p.name for p in (CHART / "ci").glob("*-values.yaml"))


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(_tool("helm")), *args], capture_output=True, text=True, timeout=120, check=False)
    if check and proc.returncode != 0:
        pytest.fail(f"helm {' '.join(args)} failed:\n{proc.stderr}{proc.stdout}")
    return proc


def template(*sets: str, values: str = "small-values.yaml", release: str = RELEASE) -> list[dict]:
    args = ["template", release, str(CHART), "-f", str(CHART / "ci" / values)]
    for s in sets:
        args += ["--set", s]
    return [d for d in yaml.safe_load_all(helm(*args).stdout) if d]


def template_error(*sets: str, set_json: str | None = None) -> str:
    args = ["template", RELEASE, str(CHART)]
    for s in sets:  # "json:" marks a --set-json value (numbers stay numbers)
        args += ["--set-json", s[5:]] if s.startswith("json:") else ["--set", s]
    if set_json:
        args += ["--set-json", set_json]
    proc = helm(*args, check=False)
    assert proc.returncode != 0, f"helm template accepted {sets or set_json}"
    return proc.stderr


def rayservice(objects: list[dict]) -> dict:
    return next(o for o in objects if o["kind"] == "RayService")


def worker(objects: list[dict]) -> dict:
    return rayservice(objects)["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]


# --- lint -------------------------------------------------------------------------------------------------

def test_every_overlay_tier_is_a_ci_scenario():
    assert SCENARIOS == sorted(f"{t}-values.yaml" for t in TIERS)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_helm_lint_strict_passes_for_scenario(scenario):
    out = helm("lint", "--strict", str(CHART), "-f", str(CHART / "ci" / scenario)).stdout
    assert "1 chart(s) linted, 0 chart(s) failed" in out


def test_helm_lint_strict_fails_on_a_value_the_schema_rejects(tmp_path):
    bad = tmp_path / "bad-values.yaml"
    bad.write_text("worker:\n  gpus: -1\n")
    proc = helm("lint", "--strict", str(CHART), "-f", str(bad), check=False)
    assert proc.returncode != 0
    assert "at '/worker/gpus': minimum: got -1, want 0" in proc.stdout + proc.stderr


# --- strict schema: every kind of rule has a negative test with its exact error ---------------------------

@pytest.mark.parametrize(("sets", "error"), [
    (["workers.gpus=1"], "at '': additional properties 'workers' not allowed"),
    (["worker.gpu=1"], "at '/worker': additional properties 'gpu' not allowed"),
    (["serve.model.revision=main"], "at '/serve/model': additional properties 'revision' not allowed"),
    (["gke.nics=8"], "at '/gke': additional properties 'nics' not allowed"),
    (["hfToken.secret=x"], "at '/hfToken': additional properties 'secret' not allowed"),
    (["monitoring.port=8080"], "at '/monitoring': additional properties 'port' not allowed"),
    (["upgradeStrategy=BlueGreen"],
     "at '/upgradeStrategy': value must be one of 'NewCluster', 'NewClusterWithIncrementalUpgrade', 'None'"),
    (["gke.machine=a3-ultra"], "at '/gke/machine': value must be one of '', 'a3-high', 'a3-mega'"),
    (["serve.accelerator.config.kind=npu"],
     "at '/serve/accelerator/config/kind': value must be one of 'cpu', 'gpu', 'tpu'"),
    (["worker.gpus=one"], "at '/worker/gpus': got string, want integer"),
    (["autoscaler=yes"], "at '/autoscaler': got string, want boolean"),
    (["worker.gpus=-1"], "at '/worker/gpus': minimum: got -1, want 0"),
    (["serve.engineKwargs.tensor_parallel_size=0"],
     "at '/serve/engineKwargs/tensor_parallel_size': minimum: got 0, want 1"),
    (["json:serve.engineKwargs.gpu_memory_utilization=1.5"],
     "at '/serve/engineKwargs/gpu_memory_utilization': maximum: got 1.5, want 1"),
    (["serve.engineKwargs.tensorParallelSize=8"],
     "invalid propertyName 'tensorParallelSize'\n  - at '': 'tensorParallelSize' does not match pattern '^[a-z][a-z0-9_]*$'"),
    (["worker.memory=32GB"], "at '/worker/memory': '32GB' does not match pattern"),
    (["initializingTimeout=30 minutes"], "at '/initializingTimeout': '30 minutes' does not match pattern"),
    (["image.tag=latest"], "at '/image/tag': 'latest' does not match pattern"),
    (["serve.routePrefix=v1"], "at '/serve/routePrefix': 'v1' does not match pattern '^/'"),
    (["fullnameOverride=Llama_8B"], "at '/fullnameOverride': 'Llama_8B' does not match pattern"),
    (["serve.model.id="], "at '/serve/model/id': minLength: got 0, want 1"),
    (["serve.model=null"], "at '/serve': missing property 'model'"),
])
def test_schema_rejects(sets, error):
    assert error in template_error(*sets)


def test_schema_rejects_a_toleration_with_an_unknown_key():
    err = template_error(set_json='worker.tolerations=[{"key":"nvidia.com/gpu","efect":"NoSchedule"}]')
    assert "at '/worker/tolerations/0': additional properties 'efect' not allowed" in err


def test_schema_rejects_a_non_string_ray_resource_amount():
    err = template_error(set_json='worker.rayResources={"accelerator_type:A100-40G": 1}')
    assert "at '/worker/rayResources/accelerator_type:A100-40G': got number, want string" in err


# --- cross-field rules (templates/_validate.tpl) -----------------------------------------------------------

@pytest.mark.parametrize(("sets", "error"), [
    (["worker.replicas=9"], "worker.replicas (9) must lie between worker.minReplicas (1) and worker.maxReplicas (4)"),
    (["serve.autoscaling.minReplicas=5"],
     "serve.autoscaling.minReplicas (5) must not exceed serve.autoscaling.maxReplicas (4)"),
    (["gke.machine=a3-high"], "gke.machine a3-high gives each worker a whole 8-GPU node for GPUDirect: "
                              "set worker.gpus to 8 (got 1)"),
    (["upgradeStrategy=NewClusterWithIncrementalUpgrade", "autoscaler=false"],
     "upgradeStrategy NewClusterWithIncrementalUpgrade needs the Ray autoscaler: set autoscaler to true"),
    (["worker.gpus=0", "serve.accelerator.type=L4"],
     "serve.accelerator.type L4 needs GPU workers: worker.gpus is 0 (use serve.accelerator.config.kind: cpu)"),
])
def test_template_fails_on_inconsistent_values(sets, error):
    assert error in template_error(*sets)


# --- rendering ---------------------------------------------------------------------------------------------

def test_serve_config_is_yaml_rendered_from_values_and_never_hand_escaped():
    svc = rayservice(template('serve.model.id=a "quoted": model', "serve.model.tokenizer=org/tok"))
    serve = yaml.safe_load(svc["spec"]["serveConfigV2"])
    llm = serve["applications"][0]["args"]["llm_configs"][0]
    assert llm["model_loading_config"] == {"model_id": 'a "quoted": model', "model_source":
                                           "unsloth/Meta-Llama-3.1-8B-Instruct", "tokenizer_source": "org/tok"}


def test_ray_version_is_derived_from_the_image_tag():
    svc = rayservice(template("image.tag=2.61.1-py312-cu130"))
    assert svc["spec"]["rayClusterConfig"]["rayVersion"] == "2.61.1"
    containers = [svc["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0],
                  worker([svc])["template"]["spec"]["containers"][0]]
    assert {c["image"] for c in containers} == {"rayproject/ray-llm:2.61.1-py312-cu130"}


def test_name_defaults_to_release_and_chart_and_is_truncated_to_63_characters():
    long_release = "r" * 70
    svc = rayservice(template("fullnameOverride=", release=long_release[:53]))
    assert svc["metadata"]["name"] == f"{'r' * 53}-ray-llm"[:63].rstrip("-")
    assert len(svc["metadata"]["name"]) <= 63
    assert rayservice(template("fullnameOverride=", release="ray-llm-prod"))["metadata"]["name"] == "ray-llm-prod"


def test_standard_labels_are_set():
    labels = rayservice(template())["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "ray-llm"
    assert labels["app.kubernetes.io/instance"] == RELEASE
    assert labels["app.kubernetes.io/managed-by"] == "Helm"


def test_a_cpu_only_worker_requests_no_gpu_and_has_no_gpu_toleration():
    spec = worker(template(values="local-cpu-values.yaml"))["template"]["spec"]
    assert "nvidia.com/gpu" not in spec["containers"][0]["resources"]["limits"]
    assert "tolerations" not in spec


def render_notes(tmp_path: Path, values: str, namespace: str) -> str:
    """NOTES.txt as `helm install` prints it. `helm template` skips NOTES.txt and `helm install --dry-run` needs a
    cluster, so a copy of the chart wraps it in a define and renders that into a YAML string."""
    import shutil

    chart = tmp_path / "ray-llm"
    shutil.copytree(CHART, chart)
    notes = (chart / "templates" / "NOTES.txt").read_text()
    (chart / "templates" / "_notes.tpl").write_text('{{- define "notes" -}}\n' + notes + '{{- end }}\n')
    (chart / "templates" / "notes-rendered.yaml").write_text('notes: {{ include "notes" . | toJson }}\n')
    out = helm("template", RELEASE, str(chart), "-f", str(CHART / "ci" / values), "--namespace", namespace,
               "--show-only", "templates/notes-rendered.yaml").stdout
    return yaml.safe_load(out)["notes"]


def test_notes_print_the_port_forward_and_a_curl_to_try(tmp_path):
    notes = render_notes(tmp_path, "large-values.yaml", "llm")
    assert "kubectl -n llm port-forward svc/deepseek-r1-serve-svc 8000:8000" in notes
    assert "curl -s http://localhost:8000/v1/chat/completions" in notes
    model_id = yaml.safe_load((CHART / "ci" / "large-values.yaml").read_text())["serve"]["model"]["id"]
    assert f'"model": "{model_id}"' in notes
    assert "kubectl -n llm wait rayservice/deepseek-r1 --for=condition=Ready --timeout=90m" in notes


def test_monitoring_adds_a_podmonitor_only_when_enabled():
    assert "PodMonitor" not in [o["kind"] for o in template()]
    objects = template("monitoring.enabled=true", "monitoring.interval=30s")
    monitor = next(o for o in objects if o["kind"] == "PodMonitor")
    assert monitor["metadata"]["name"] == "llama-8b-metrics"
    assert [(e["port"], e["interval"]) for e in monitor["spec"]["podMetricsEndpoints"]] == [("metrics", "30s")]


def test_gke_node_labels_merge_over_the_worker_node_selector():
    spec = worker(template("gke.machine=a3-mega", "worker.gpus=8", "worker.nodeSelector.pool=gpu"))["template"]["spec"]
    assert spec["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-h100-mega-80gb",
                                    "cloud.google.com/gke-ephemeral-storage-local-ssd": "true", "pool": "gpu"}


def kustomize_with_components(tmp_path: Path, base: str, components: list[str]) -> list[dict]:
    """An overlay built on the fly: overlays/<base> plus components, as a platform overlay would add them."""
    import os

    overlay = tmp_path / "overlay"
    overlay.mkdir()
    # Kustomize takes only relative paths to other kustomizations.
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(REPO / "overlays" / base, overlay)],
        "components": [os.path.relpath(REPO / "manifests" / "components" / c, overlay) for c in components],
    }))
    out = subprocess.run([str(_tool("kustomize")), "build", str(overlay)], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def test_a3_mega_monitoring_and_hf_token_match_their_kustomize_components(tmp_path):
    """No overlay uses gke-a3-mega or monitoring yet: compare with large + those components."""
    values = tmp_path / "a3-mega-values.yaml"
    large = (CHART / "ci" / "large-values.yaml").read_text()
    gpu_product = "  nodeSelector:\n    nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3\n"
    assert gpu_product in large
    values.write_text(large.replace(gpu_product, "") + textwrap.dedent("""\
        gke:
          machine: a3-mega
        hfToken:
          enabled: true
        monitoring:
          enabled: true
        """))
    chart = [d for d in yaml.safe_load_all(helm("template", RELEASE, str(CHART), "-f", str(values)).stdout) if d]
    overlay = kustomize_with_components(tmp_path, "large", ["gke-a3-mega", "hf-token", "monitoring"])
    diff = differences(comparable_rayservice(chart), comparable_rayservice(overlay))
    assert not diff, "\n".join(diff)
    chart_monitor = next(o for o in chart if o["kind"] == "PodMonitor")
    overlay_monitor = next(o for o in overlay if o["kind"] == "PodMonitor")
    assert chart_monitor["spec"] == overlay_monitor["spec"]
