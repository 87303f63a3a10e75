"""The serving-pattern components against a real kube-apiserver and the real KubeRay operator: large-dp-ep with
components/prefix-routing and components/high-throughput applies under strict server-side validation, and the
operator builds head and worker pods that carry the high-throughput flags (the overlays themselves are covered by
test_controlplane_apply.py and test_controlplane_operator.py, which take every overlay)."""

from __future__ import annotations

import io
import uuid

import pytest
import yaml

from kuberay_llm import serveconfig
from kuberay_llm.harness.apply import apply_objects
from kuberay_llm.preflight.serving_patterns import CLUSTER_FLAGS
from kuberay_llm.render import load_source
from test_controlplane_operator import env_of, watch_until

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def both_components(overlay_copy):
    overlay = overlay_copy("large-dp-ep").parent / "dp-routed-fast"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "resources": ["../large-dp-ep"],
        "components": ["../../manifests/components/prefix-routing", "../../manifests/components/high-throughput"]}))
    return load_source(str(overlay))


def test_the_components_apply_under_strict_validation(both_components, kube):
    first = apply_objects(kube, both_components.objects, source=both_components.source, out=io.StringIO())
    assert first and set(first.values()) == {"created"}, first
    second = apply_objects(kube, both_components.objects, source=both_components.source, out=io.StringIO())
    assert set(second.values()) == {"unchanged"}, second
    live = kube.request("GET", f"/apis/ray.io/v1/namespaces/{kube.namespace}/rayservices/deepseek-r1-dp")
    router = serveconfig.of_rayservice(live).llm_entries[0].request_router_class
    assert router == "ray.serve.llm.request_router:PrefixCacheAffinityRouter"


def test_the_operator_puts_the_high_throughput_flags_on_every_ray_pod(both_components, controlplane):
    namespace = f"op-ht-{uuid.uuid4().hex[:6]}"
    controlplane.kube().request("POST", "/api/v1/namespaces", body={
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    controlplane.start_operator(namespace=namespace)
    try:
        kube = controlplane.kube(namespace)
        apply_objects(kube, both_components.objects, source=both_components.source, out=io.StringIO())
        clusters = watch_until(kube, f"/apis/ray.io/v1/namespaces/{namespace}/rayclusters",
                               [("labelSelector", "ray.io/originated-from-cr-name=deepseek-r1-dp")], lambda i: i)
        cluster = clusters[0]["metadata"]["name"]
        pods = watch_until(kube, f"/api/v1/namespaces/{namespace}/pods", [("labelSelector", f"ray.io/cluster={cluster}")],
                           lambda items: items if len(items) >= 3 else None)  # the head and 2 workers
        for pod in pods:
            env = env_of(pod["spec"]["containers"][0])
            assert {name: env[name].get("value") for name in CLUSTER_FLAGS} == dict.fromkeys(CLUSTER_FLAGS, "1"), \
                pod["metadata"]["name"]
    finally:
        controlplane.stop_operator()
