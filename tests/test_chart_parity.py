"""The chart and the overlays describe the same deployments: for every tier, `helm template` with the chart's
ci values and `kustomize build overlays/<tier>` must yield the same RayService.

Objects are compared semantically: YAML comments and key order do not count, serveConfigV2 is compared parsed,
and the chart's own standard labels (helm.sh/chart, app.kubernetes.io/*) are left out. Helm cannot read files
outside the chart, so the overlays' serve-config.yaml cannot be the chart's input: this test is the guard.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from kuberay_llm import serveconfig

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "ray-llm"
TIERS = ["small", "medium", "large", "gke-a3-deepseek", "local-cpu", "vision", "reasoning", "hybrid-reasoning",
         "gpt-oss-20b", "gpt-oss-120b", "large-dp-ep", "large-pd"]
RELEASE = "ray-llm-test"  # fixed release name: names come from fullnameOverride


def _tool(name: str) -> Path:
    from kuberay_llm import toolchain

    try:
        return toolchain.tool(name)
    except Exception as exc:  # noqa: BLE001 - a missing tool fails, naming the make target
        pytest.fail(str(exc), pytrace=False)


def helm_template(values: Path, *extra: str) -> list[dict]:
    out = subprocess.run([str(_tool("helm")), "template", RELEASE, str(CHART), "-f", str(values), *extra],
                         capture_output=True, text=True, check=True, timeout=120).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def kustomize_build(tier: str) -> list[dict]:
    out = subprocess.run([str(_tool("kustomize")), "build", str(REPO / "overlays" / tier)],
                         capture_output=True, text=True, check=True, timeout=120).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def comparable_rayservice(objects: list[dict]) -> dict:
    """The one RayService of a rendering, normalised for a semantic comparison."""
    services = [o for o in objects if o.get("kind") == "RayService"]
    assert len(services) == 1, f"expected one RayService, got {len(services)}"
    svc = yaml.safe_load(yaml.safe_dump(services[0]))  # deep copy
    svc["spec"]["serveConfigV2"] = serveconfig.of_rayservice(svc).data  # the one serve-config parser
    labels = svc["metadata"].pop("labels", {}) or {}
    leftover = {k: v for k, v in labels.items()
                if not (k == "helm.sh/chart" or k.startswith("app.kubernetes.io/"))}
    if leftover:
        svc["metadata"]["labels"] = leftover
    return svc


def differences(a, b, path="") -> list[str]:
    """Readable paths where two parsed objects differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b), key=str):
            if key not in a:
                out.append(f"{path}.{key}: only in the overlay: {b[key]!r}")
            elif key not in b:
                out.append(f"{path}.{key}: only in the chart: {a[key]!r}")
            else:
                out += differences(a[key], b[key], f"{path}.{key}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: chart {a!r} != overlay {b!r}"]


@pytest.mark.parametrize("tier", TIERS)
def test_chart_ci_values_render_the_same_rayservice_as_the_overlay(tier):
    chart = comparable_rayservice(helm_template(CHART / "ci" / f"{tier}-values.yaml"))
    overlay = comparable_rayservice(kustomize_build(tier))
    diff = differences(chart, overlay)
    assert not diff, f"charts/ray-llm/ci/{tier}-values.yaml drifted from overlays/{tier}:\n  " + "\n  ".join(diff)


def test_every_overlay_has_a_chart_scenario():
    overlays = sorted(p.parent.name for p in (REPO / "overlays").glob("*/kustomization.yaml"))
    scenarios = sorted(p.name.removesuffix("-values.yaml") for p in (CHART / "ci").glob("*-values.yaml"))
    assert overlays == scenarios == sorted(TIERS)


def test_parity_check_reports_a_drifted_engine_argument(tmp_path):
    values = tmp_path / "drifted.yaml"
    values.write_text((CHART / "ci" / "large-values.yaml").read_text().replace("max_num_seqs: 40", "max_num_seqs: 41"))
    diff = differences(comparable_rayservice(helm_template(values)), comparable_rayservice(kustomize_build("large")))
    assert diff == [".spec.serveConfigV2.applications[0].args.llm_configs[0].engine_kwargs.max_num_seqs: "
                    "chart 41 != overlay 40"]


def test_parity_check_reports_a_drifted_worker_shape(tmp_path):
    values = tmp_path / "drifted.yaml"
    values.write_text((CHART / "ci" / "medium-values.yaml").read_text() + "gke:\n  machine: a3-high\n")
    diff = differences(comparable_rayservice(helm_template(values)), comparable_rayservice(kustomize_build("medium")))
    assert ".spec.rayClusterConfig.workerGroupSpecs[0].template.metadata.annotations.devices.gke.io/container.tcpx-daemon: only in the chart" in "\n".join(diff)


def test_the_chart_default_image_is_the_base_image():
    """One image for every GPU deployment: values.yaml's default and manifests/base's `images` entry."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())["image"]
    base = yaml.safe_load((REPO / "manifests" / "base" / "kustomization.yaml").read_text())["images"]
    assert [(b["name"], b["newTag"]) for b in base] == [(values["repository"], values["tag"])], (
        "charts/ray-llm/values.yaml image and manifests/base/kustomization.yaml images differ: change both")
