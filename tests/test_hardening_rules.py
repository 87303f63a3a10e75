"""Preflight rules of the hardening components (preflight/hardening.py): each fails a broken or extended copy of
a real overlay with its exact message, and the intended use of each component passes. Runs the real pinned
kustomize and kubeconform and Ray's own models, in process."""

from __future__ import annotations

import pytest
import yaml

from hardening_helpers import (add_components, add_json_patch, add_resource, findings, remove_component,
                               set_model_source)
from overlay_helpers import edit_yaml


def errors(items: list[str]) -> list[str]:
    return [f for f in items if f.startswith("error: ")]


def test_each_component_on_a_gpu_tier_as_documented_passes(overlay_copy):
    small = overlay_copy("small")
    add_components(small, "pod-security", "ray-auth", "gcs-fault-tolerance", "monitoring", "model-cache")
    set_model_source(small, "/models/unsloth/Meta-Llama-3.1-8B-Instruct")
    edit_yaml(small.parent.parent / "manifests/components/model-cache/pvc.yaml",
              lambda pvc: pvc["spec"]["resources"]["requests"].update(storage="18Gi"))
    assert errors(findings(small)) == []


# --- network ---------------------------------------------------------------------------------------------------

def test_a_load_balancer_on_the_dashboard_port_is_an_error(overlay_copy):
    small = overlay_copy("small")
    add_resource(small, "dashboard-lb.yaml", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "ray-dashboard"},
        "spec": {"type": "LoadBalancer", "selector": {"ray.io/node-type": "head"},
                 "ports": [{"name": "serve", "port": 8000}, {"name": "dash", "port": 80, "targetPort": "dashboard"}]}})
    assert errors(findings(small)) == [
        "error: overlays/small: Service/ray-dashboard: spec.ports[1] (type LoadBalancer): exposes Ray's dashboard port "
        "8265 outside the cluster; fix: expose only Serve's port 8000 (<name>-serve-svc); reach the dashboard with "
        "`kubectl port-forward svc/<name>-head-svc 8265`"]


def test_an_ingress_to_the_gcs_port_is_an_error(overlay_copy):
    small = overlay_copy("small")
    add_resource(small, "gcs-ingress.yaml", {
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "ray"},
        "spec": {"rules": [{"http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {
            "service": {"name": "llama-8b-head-svc", "port": {"number": 6379}}}}]}}]}})
    assert errors(findings(small)) == [
        "error: overlays/small: Ingress/ray: spec.rules[0].http.paths[0].backend.service.port: routes to Ray's "
        "gcs-server port 6379 from outside the cluster; fix: expose only Serve's port 8000 (<name>-serve-svc); reach "
        "the dashboard with `kubectl port-forward svc/<name>-head-svc 8265`"]


def test_a_node_port_head_service_and_the_head_ingress_are_errors(overlay_copy):
    small = overlay_copy("small")
    add_json_patch(small, "head-exposed.yaml", [
        {"op": "add", "path": "/spec/rayClusterConfig/headGroupSpec/headService", "value": {"spec": {"type": "NodePort"}}},
        {"op": "add", "path": "/spec/rayClusterConfig/headGroupSpec/enableIngress", "value": True}])
    found = errors(findings(small))
    assert ("error: overlays/small: RayService/llama-8b: spec.rayClusterConfig.headGroupSpec.headService.spec.type="
            "NodePort: publishes every head port, the dashboard (8265, runs submitted code), GCS (6379) and client "
            "(10001) among them, outside the cluster; fix: expose only Serve's port 8000 (<name>-serve-svc); reach the "
            "dashboard with `kubectl port-forward svc/<name>-head-svc 8265`") in found
    assert any("headGroupSpec.enableIngress=true: makes KubeRay create an Ingress to the dashboard" in f for f in found)


def test_a_load_balancer_on_serve_alone_is_fine(overlay_copy):
    small = overlay_copy("small")
    add_resource(small, "serve-lb.yaml", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "llm-public"},
        "spec": {"type": "LoadBalancer", "selector": {"ray.io/serve": "true"}, "ports": [{"port": 443, "targetPort": 8000}]}})
    assert errors(findings(small)) == []


def test_a_gpu_tier_without_network_policy_gets_a_warning(overlay_copy):
    medium = overlay_copy("medium")
    remove_component(medium, "network-policy")
    assert ("warning: overlays/medium: RayService/llama-70b: (no NetworkPolicy): has GPU workers but no NetworkPolicy "
            "selects its pods: any pod in the cluster can reach the dashboard (8265, runs submitted code), the GCS "
            "(6379) and Serve (8000); fix: add ../../manifests/components/network-policy to the overlay's components "
            "(chart: networkPolicy.enabled=true)") in findings(medium)


def test_the_cpu_tier_without_network_policy_gets_no_warning():
    assert not [f for f in findings("local-cpu") if "NetworkPolicy" in f]


def test_a_patch_that_replaces_the_pod_metadata_leaves_the_policy_protecting_nothing(overlay_copy):
    small = overlay_copy("small")
    add_json_patch(small, "pod-metadata.yaml", [{"op": "add", "path": "/spec/rayClusterConfig/workerGroupSpecs/0/"
                                                 "template/metadata", "value": {"annotations": {"team": "ml"}}}])
    found = errors(findings(small))
    assert ("error: overlays/small: NetworkPolicy/ray-llm-cluster: spec.podSelector.matchLabels.app.kubernetes.io/"
            "instance=llama-8b: does not select the pods of spec.rayClusterConfig.workerGroupSpecs[0] (their "
            "app.kubernetes.io/instance is missing): it protects nothing there; fix: keep manifests/base's pod label "
            "app.kubernetes.io/instance on every group's template (a patch that sets template.metadata as a whole "
            "removes it)") in found
    assert len(found) == 2  # both policies


# --- pod security ----------------------------------------------------------------------------------------------

def test_a_hardened_rayservice_with_one_container_left_default_is_an_error(overlay_copy):
    small = overlay_copy("small")
    add_components(small, "pod-security")
    add_json_patch(small, "worker-escalation.yaml", [{"op": "remove", "path": "/spec/rayClusterConfig/"
                                                      "workerGroupSpecs/0/template/spec/containers/0/securityContext"}])
    assert errors(findings(small)) == [
        "error: overlays/small: RayService/llama-8b: spec.rayClusterConfig.workerGroupSpecs[0].template.spec."
        "containers[0].securityContext.allowPrivilegeEscalation: must be false (and 1 more): the rest of the "
        "RayService runs hardened, this container would make the pod fail the `restricted` Pod Security Standard; "
        "fix: give it the securityContext of components/pod-security (chart: podSecurity.enabled)"]


def test_the_autoscaler_sidecar_of_a_hardened_head_needs_its_security_context(overlay_copy):
    small = overlay_copy("small")
    add_components(small, "pod-security")
    add_json_patch(small, "autoscaler.yaml", [{"op": "remove", "path": "/spec/rayClusterConfig/autoscalerOptions"}])
    assert errors(findings(small)) == [
        "error: overlays/small: RayService/llama-8b: spec.rayClusterConfig.autoscalerOptions.securityContext."
        "allowPrivilegeEscalation: must be false: KubeRay adds the autoscaler sidecar to the head pod with this "
        "securityContext, and the head pod fails the `restricted` Pod Security Standard; fix: set "
        "autoscalerOptions.securityContext as components/pod-security does"]


def test_pod_security_on_a3_names_the_privileged_gpudirect_daemon(overlay_copy):
    """gke-a3-deepseek builds on large, which includes pod-security: its Ray containers are hardened."""
    deepseek = overlay_copy("gke-a3-deepseek")
    found = findings(deepseek)
    assert errors(found) == []
    assert ("warning: overlays/gke-a3-deepseek: RayService/deepseek-r1: spec.rayClusterConfig.workerGroupSpecs[0]."
            "template.spec.containers[1] (tcpx-daemon): is privileged by design (GKE's GPUDirect receive daemon): this "
            "pod passes no Pod Security level but `privileged`, though its Ray container is hardened; fix: label the "
            "namespace pod-security.kubernetes.io/enforce=privileged (restricted or baseline namespaces refuse the "
            "pod)") in found


def test_token_auth_with_a_hand_set_token_variable_is_an_error(overlay_copy):
    small = overlay_copy("small")
    add_components(small, "ray-auth")
    add_json_patch(small, "auth-env.yaml", [{"op": "add", "path": "/spec/rayClusterConfig/headGroupSpec/template/"
                                             "spec/containers/0/env/-", "value": {"name": "RAY_AUTH_TOKEN",
                                                                                 "valueFrom": {"secretKeyRef": {
                                                                                     "name": "mine", "key": "t"}}}}])
    assert errors(findings(small)) == [
        "error: overlays/small: RayService/llama-8b: spec.rayClusterConfig.headGroupSpec.template.spec.containers[0]."
        "env[1].name=RAY_AUTH_TOKEN: is set by KubeRay from authOptions (controllers/ray/common/pod.go "
        "SetContainerTokenAuthEnvVars), which leaves a variable already present alone: this one would replace the "
        "cluster's token; fix: remove it"]


# --- head failure ----------------------------------------------------------------------------------------------

def test_a_literal_redis_password_and_a_bad_address_are_errors(overlay_copy):
    small = overlay_copy("small")
    add_components(small, "gcs-fault-tolerance")
    add_json_patch(small, "redis.yaml", [
        {"op": "replace", "path": "/spec/rayClusterConfig/gcsFaultToleranceOptions/redisPassword",
         "value": {"value": "hunter2"}},
        {"op": "replace", "path": "/spec/rayClusterConfig/gcsFaultToleranceOptions/redisAddress",
         "value": "http://redis/0"}])
    assert errors(findings(small)) == [
        "error: overlays/small: RayService/llama-8b: spec.rayClusterConfig.gcsFaultToleranceOptions.redisPassword."
        "value: is a literal Redis password in the manifest (and in git); fix: use redisPassword.valueFrom."
        "secretKeyRef (components/gcs-fault-tolerance reads the Secret ray-gcs-redis, key password)",
        "error: overlays/small: RayService/llama-8b: spec.rayClusterConfig.gcsFaultToleranceOptions.redisAddress="
        "http://redis/0: is not host:port: Ray's GCS and KubeRay's Redis cleanup Job read `host:port`, "
        "`redis://host:port` or `rediss://host:port` (TLS), comma-separated for several; fix: set e.g. "
        "redis://ray-gcs-redis:6379"]


# --- weights ---------------------------------------------------------------------------------------------------

def test_model_cache_with_a_hub_model_source_is_an_error(overlay_copy):
    small = overlay_copy("small")
    add_components(small, "model-cache")
    assert errors(findings(small)) == [
        "error: overlays/small: RayService/llama-8b: serveConfigV2 llm_configs[0].model_loading_config.model_source="
        "unsloth/Meta-Llama-3.1-8B-Instruct: is not inside the model cache mounted at /models: every replica would "
        "download it again, and the fill Job downloads nothing for it; fix: set model_source: "
        "/models/unsloth/Meta-Llama-3.1-8B-Instruct"]


def test_a_model_cache_smaller_than_the_checkpoint_is_an_error(overlay_copy):
    large = overlay_copy("large")
    add_components(large, "model-cache")
    set_model_source(large, "/models/deepseek-ai/DeepSeek-R1")
    from kuberay_llm.plan.catalog import find_model
    from kuberay_llm.plan.checkpoint import checkpoint

    need = checkpoint(find_model("deepseek-ai/DeepSeek-R1")).bytes * 1.1
    assert errors(findings(large)) == [
        "error: overlays/large: PersistentVolumeClaim/model-cache: spec.resources.requests.storage=100Gi: holds 107 GB, "
        f"but the checkpoint (deepseek-ai/DeepSeek-R1 {need / 1.1 / 1e9:.0f} GB) plus 10% need {need / 1e9:.0f} GB: "
        f"the fill Job would stop with a full disk; fix: request at least {-(-need // 2**30):.0f}Gi"]


def test_a_fill_job_that_downloads_another_model_is_an_error(overlay_copy, tmp_path):
    from kuberay_llm import render

    small = overlay_copy("small")
    add_components(small, "model-cache")
    set_model_source(small, "/models/unsloth/Meta-Llama-3.1-8B-Instruct")
    edit_yaml(small.parent.parent / "manifests/components/model-cache/pvc.yaml",
              lambda pvc: pvc["spec"]["resources"]["requests"].update(storage="18Gi"))
    objects = render.render_overlay(str(small)).objects
    job = next(o for o in objects if o["kind"] == "Job")
    env = next(e for e in job["spec"]["template"]["spec"]["containers"][0]["env"] if e["name"] == "SERVE_CONFIG")
    env["value"] = env["value"].replace("/models/unsloth/Meta-Llama-3.1-8B-Instruct", "/models/Qwen/Qwen2.5-0.5B-Instruct")
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text(yaml.safe_dump_all(objects))
    assert errors(findings(manifest)) == [
        f"error: {manifest}: Job/model-cache-fill: spec.template.spec.containers.fill.env.SERVE_CONFIG: downloads "
        "/models/Qwen/Qwen2.5-0.5B-Instruct into /models, but the RayService loads "
        "/models/unsloth/Meta-Llama-3.1-8B-Instruct from /models: the workers would wait for it forever; fix: keep the "
        "Job's SERVE_CONFIG equal to serveConfigV2 (components/model-cache copies it; do not edit it by hand)"]


def test_a_local_model_source_without_a_mount_is_an_error(overlay_copy):
    small = overlay_copy("small")
    set_model_source(small, "/models/unsloth/Meta-Llama-3.1-8B-Instruct")
    assert errors(findings(small)) == [
        "error: overlays/small: RayService/llama-8b: serveConfigV2 llm_configs[0].model_loading_config.model_source="
        "/models/unsloth/Meta-Llama-3.1-8B-Instruct: is a local path, but no worker mounts a volume there: vLLM fails "
        "with 'not a directory'; fix: add components/model-cache (chart: modelCache.enabled)"]


def test_the_gcsfuse_bucket_placeholder_is_an_error(overlay_copy):
    small = overlay_copy("small")
    add_components(small, "gke-gcsfuse")
    set_model_source(small, "/models/unsloth/Meta-Llama-3.1-8B-Instruct")
    assert errors(findings(small)) == [
        "error: overlays/small: PersistentVolume/ray-llm-model-bucket: spec.csi.volumeHandle=set-the-model-bucket: is "
        "the placeholder of components/gke-gcsfuse, not a bucket; fix: set your Cloud Storage bucket's name"]


def test_runai_streamer_from_a_hub_id_is_an_error(overlay_copy):
    small = overlay_copy("small")
    from overlay_helpers import llm_config

    path, cfg = llm_config(small)
    edit_yaml(path, lambda d: cfg(d)["engine_kwargs"].update(load_format="runai_streamer"))
    found = findings(small)
    assert errors(found) == [
        "error: overlays/small: RayService/llama-8b: serveConfigV2 llm_configs[0].model_loading_config.model_source="
        "unsloth/Meta-Llama-3.1-8B-Instruct: is a Hugging Face repo id, but load_format runai_streamer streams the "
        "safetensors from object storage (vLLM's Run:ai Model Streamer) or a local directory; fix: set model_source: "
        "gs://<bucket>/<path> or s3://<bucket>/<path> with the weights"]
    assert ("warning: overlays/small: RayService/llama-8b: serveConfigV2 llm_configs[0].engine_kwargs.load_format="
            "runai_streamer: needs the runai-model-streamer package in the image, which ray[llm] of the pinned Ray does "
            "not pull in (it requires vllm[audio], not vllm[runai]); fix: use an image with `pip install "
            "runai-model-streamer[s3,gcs]`, and give the pods the bucket's credentials") in found


# --- composition -----------------------------------------------------------------------------------------------

def test_gke_a3_and_a3_mega_together_are_named(overlay_copy):
    deepseek = overlay_copy("gke-a3-deepseek")
    edit_yaml(deepseek / "kustomization.yaml",
              lambda k: k["components"].append("../../manifests/components/gke-a3-mega"))
    found = errors(findings(deepseek))
    assert found[0] == ("error: overlays/gke-a3-deepseek: RayService/deepseek-r1: components gke-a3 + gke-a3-mega: "
                        "cannot go together: one worker group runs on one machine type: both add their GPUDirect "
                        "daemon, NICs and the same NCCL variables; fix: keep one of gke-a3 and gke-a3-mega")
    assert ("error: overlays/gke-a3-deepseek: RayService/deepseek-r1: spec.rayClusterConfig.workerGroupSpecs[0].template."
            "spec.containers[0].env[17].name=LD_LIBRARY_PATH: Duplicate value: the RayService CRD keys env by name, so "
            "the API server refuses the RayService (two components set the same variable); fix: set it in one place") in found


def test_gke_a3_on_a_one_gpu_tier_is_an_error(overlay_copy):
    small = overlay_copy("small")
    add_components(small, "gke-a3")
    assert errors(findings(small)) == [
        "error: overlays/small: RayService/llama-8b: spec.rayClusterConfig.workerGroupSpecs[0] (component gke-a3): "
        "requests 1 nvidia.com/gpu per pod, but gke-a3 gives each worker a whole 8-GPU A3 node for GPUDirect (its NIC "
        "and NCCL settings are per node); fix: give the worker group 8 GPUs per pod, or drop the component"]


def test_a_second_metrics_port_is_refused_before_the_api_server_does(overlay_copy):
    small = overlay_copy("small")
    add_json_patch(small, "old-monitoring.yaml", [{"op": "add", "path": "/spec/rayClusterConfig/workerGroupSpecs/0/"
                                                   "template/spec/containers/0/ports/-",
                                                   "value": {"name": "prom", "containerPort": 8080}}])
    assert errors(findings(small)) == [
        "error: overlays/small: RayService/llama-8b: spec.rayClusterConfig.workerGroupSpecs[0].template.spec."
        "containers[0].ports[1].containerPort=8080: Duplicate value: the RayService CRD keys ports by containerPort "
        "and protocol, so the API server refuses the RayService; fix: declare the port once (manifests/base declares "
        "8080 as metrics)"]


@pytest.mark.parametrize("rule", ["rule_no_exposed_ray_ports", "rule_network_policy_on_gpu_tiers",
                                  "rule_pod_security_everywhere", "rule_auth_env_left_to_kuberay",
                                  "rule_gcs_fault_tolerance", "rule_components_compose", "rule_model_cache",
                                  "rule_streaming_load_format"])
def test_every_hardening_rule_is_registered(rule):
    from kuberay_llm.preflight import hardening, rules

    assert getattr(hardening, rule) in [r for r, _ in rules.RULES]


def test_every_gpu_overlay_of_the_repository_has_the_network_policy():
    from kuberay_llm import render
    from kuberay_llm.preflight.hardening import rule_network_policy_on_gpu_tiers
    from kuberay_llm.preflight.rayservice import facts

    missing = []
    for name in render.overlay_names():
        rendered = render.render_overlay(name)
        for obj in rendered.objects:
            if obj["kind"] == "RayService":
                missing += [str(f) for f in rule_network_policy_on_gpu_tiers(rendered.source, facts(obj),
                                                                              {"objects": rendered.objects})]
    assert not missing, "\n".join(missing)
