"""Each hardening component and its chart value render the same objects: the RayService (as the tier parity test
compares it) and every other object's spec/data (names differ: the chart prefixes its release's). The overlays are
the tiers plus the components, as a platform overlay adds them; the chart is the tier's ci values plus the value."""

from __future__ import annotations

import subprocess
import textwrap

import pytest
import yaml

from hardening_helpers import add_components, objects_of, set_model_source
from overlay_helpers import REPO
from test_chart_parity import CHART, RELEASE, _tool, comparable_rayservice, differences

SERVE_CONFIG_ENV = "SERVE_CONFIG"


def chart(tier: str, values: str) -> list[dict]:
    extra = CHART / "ci" / f"{tier}-values.yaml"
    args = [str(_tool("helm")), "template", RELEASE, str(CHART), "-f", str(extra)]
    if values:
        import tempfile

        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write(textwrap.dedent(values))
        args += ["-f", f.name]
    return objects_of(subprocess.run(args, capture_output=True, text=True, timeout=120, check=True).stdout)


def overlay(path) -> list[dict]:
    return objects_of(subprocess.run([str(_tool("kustomize")), "build", str(path)], capture_output=True, text=True,
                                     timeout=120, check=True).stdout)


def _parsed_serve_config_env(obj: dict) -> None:
    """SERVE_CONFIG holds serveConfigV2's text: compare it parsed (comments and key order do not count)."""
    def walk(node):
        if isinstance(node, dict):
            if node.get("name") == SERVE_CONFIG_ENV and isinstance(node.get("value"), str):
                node["value"] = yaml.safe_load(node["value"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
    walk(obj)


def comparable(objects: list[dict]) -> dict:
    """kind -> sorted list of specs/data of the objects other than the RayService; the RayService normalised."""
    out: dict = {"RayService": comparable_rayservice(objects)}
    _parsed_serve_config_env(out["RayService"])
    for o in objects:
        if o["kind"] == "RayService":
            continue
        body = yaml.safe_load(yaml.safe_dump({k: v for k, v in o.items() if k in ("spec", "data")}))
        _parsed_serve_config_env(body)
        out.setdefault(o["kind"], []).append(body)
    for kind, bodies in out.items():
        if kind != "RayService":
            bodies.sort(key=lambda b: yaml.safe_dump(b))
    return out


def assert_same(chart_objects: list[dict], overlay_objects: list[dict], what: str) -> None:
    a, b = comparable(chart_objects), comparable(overlay_objects)
    assert sorted(a) == sorted(b), f"{what}: kinds differ: chart {sorted(a)} overlay {sorted(b)}"
    diff = differences(a, b)
    assert not diff, f"{what}: the chart and the components drifted:\n  " + "\n  ".join(diff[:20])


FEATURES = [
    ("pod-security", "podSecurity: {enabled: true}"),
    ("ray-auth", "rayAuth: {enabled: true}"),
    ("gcs-fault-tolerance", "gcsFaultTolerance: {enabled: true}"),
]


@pytest.mark.parametrize(("component", "values"), FEATURES, ids=[c for c, _ in FEATURES])
def test_a_component_and_its_chart_value_render_the_same(component, values, overlay_copy):
    small = overlay_copy("small")
    add_components(small, component)
    assert_same(chart("small", values), overlay(small), f"small + {component}")


def test_the_network_policies_of_the_gpu_tiers_are_the_charts():
    assert_same(chart("medium", ""), overlay(REPO / "overlays" / "medium"), "medium (network-policy)")


@pytest.mark.parametrize("storage", ["model-cache", "gke-gcsfuse"])
def test_the_model_cache_and_its_chart_value_render_the_same(storage, overlay_copy):
    small = overlay_copy("small")
    add_components(small, storage)
    set_model_source(small, "/models/unsloth/Meta-Llama-3.1-8B-Instruct")
    values = "modelCache: {enabled: true}" if storage == "model-cache" else \
        "modelCache: {enabled: true, storage: gcsfuse, bucket: set-the-model-bucket}"
    assert_same(chart("small", values), overlay(small), f"small + {storage}")


def test_every_feature_at_once_on_a3_renders_the_same(overlay_copy):
    deepseek = overlay_copy("gke-a3-deepseek")
    from overlay_helpers import edit_yaml

    edit_yaml(deepseek / "kustomization.yaml", lambda k: k["components"].extend(
        f"../../manifests/components/{c}" for c in ("ray-auth", "gcs-fault-tolerance", "model-cache",
                                                    "monitoring")))  # pod-security: from large
    set_model_source(deepseek.parent / "large", "/models/deepseek-ai/DeepSeek-R1")
    values = """\
        podSecurity: {enabled: true}
        rayAuth: {enabled: true}
        gcsFaultTolerance: {enabled: true}
        modelCache: {enabled: true}
        monitoring: {enabled: true}
        """
    assert_same(chart("gke-a3-deepseek", values), overlay(deepseek), "gke-a3-deepseek + every feature")


def test_the_parity_check_sees_a_drifted_security_context(overlay_copy):
    small = overlay_copy("small")
    add_components(small, "pod-security")
    patch = small.parent.parent / "manifests/components/pod-security/values.yaml"
    patch.write_text(patch.read_text().replace("fsGroup: 100", "fsGroup: 1000"))
    with pytest.raises(AssertionError, match=r"headGroupSpec\.template\.spec\.securityContext\.fsGroup: chart 100 != "
                                             r"overlay 1000"):
        assert_same(chart("small", "podSecurity: {enabled: true}"), overlay(small), "small + pod-security")
