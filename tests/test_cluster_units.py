"""The local cluster's pure parts, without root or processes: the kubelet's environment rules, kwok's Stage
split, the node pools against every overlay's nodeSelector, and the tiny-model overlay changing nothing but
model_source. The real path runs in tests/controlplane/test_localcluster.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kuberay_llm.cluster import containers, kwok_config
from kuberay_llm.cluster.controlplane import node_objects
from kuberay_llm.cluster.tiny_overlay import tiny_overlay
from kuberay_llm.render import overlay_names, render_overlay

POD = {"metadata": {"name": "p", "namespace": "ns", "uid": "u-1", "labels": {"ray.io/cluster": "c"}},
       "spec": {"nodeName": "local", "containers": [
           {"name": "ray", "resources": {"limits": {"cpu": "1500m", "memory": "3Gi"}}}]},
       "status": {"podIP": "10.244.0.9", "hostIP": "127.0.0.1"}}


def resolve(env: list[dict], lookup=lambda kind, name: None, base=None) -> dict:
    container = {**POD["spec"]["containers"][0], "env": env}
    return containers.resolve_env(POD, container, lookup, {"cpu": "32", "memory": "128Gi"}, base or {})


def test_env_is_resolved_as_a_kubelet_does():
    env = resolve([
        {"name": "A", "value": "x"},
        {"name": "B", "value": "$(A)-$(MISSING)-$$(A)"},
        {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "CLUSTER", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['ray.io/cluster']"}}},
        {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
        {"name": "MEM_MI", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token"}}},
    ], lookup=lambda kind, name: {"token": "t0k"} if (kind, name) == ("Secret", "hf-token") else None)
    assert env == {"A": "x", "B": "x-$(MISSING)-$(A)", "IP": "10.244.0.9", "CLUSTER": "c", "CPU": "2",
                   "MEM_MI": "3072", "TOKEN": "t0k"}


def test_a_missing_secret_is_a_create_container_config_error():
    with pytest.raises(containers.ConfigError, match=r'^secret "hf-token" not found$'):
        resolve([{"name": "T", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token"}}}])
    optional = resolve([{"name": "T", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "t",
                                                                     "optional": True}}}])
    assert "T" not in optional


def test_a_missing_key_and_an_unknown_field_are_named():
    with pytest.raises(containers.ConfigError, match=r"^couldn't find key token in Secret ns/hf-token$"):
        resolve([{"name": "T", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token"}}}],
                lookup=lambda kind, name: {"other": "x"})
    with pytest.raises(containers.ConfigError, match=r"^fieldRef 'spec.hostname' is not supported by the local "
                                                     r"kubelet$"):
        resolve([{"name": "H", "valueFrom": {"fieldRef": {"fieldPath": "spec.hostname"}}}])


def test_a_container_without_command_cannot_run_without_its_image():
    assert containers.argv_of({"name": "c", "command": ["bash", "-c"], "args": ["echo $(A)"]}, {"A": "1"}) == \
        ["bash", "-c", "echo 1"]
    with pytest.raises(containers.ConfigError, match=r"^container c has no command: the local kubelet runs no "
                                                     r"image, so it cannot fall back to the entrypoint of img$"):
        containers.argv_of({"name": "c", "image": "img"}, {})


def test_kwok_simulates_only_pods_of_kwok_nodes_and_annotated_ones():
    stages = {s["metadata"]["name"]: s["spec"] for s in yaml.safe_load_all(
        kwok_config.config_text(["gpu-0"], ["local"]))}
    assert set(stages) == {"node-initialize", "node-heartbeat", "pod-ready-kwok-node", "pod-delete-kwok-node",
                           "pod-ready-annotated", "pod-delete-annotated"}
    by_node = stages["pod-ready-kwok-node"]["selector"]["matchExpressions"]
    assert {"key": ".spec.nodeName", "operator": "In", "values": ["gpu-0"]} in by_node
    annotated = stages["pod-ready-annotated"]["selector"]["matchExpressions"]
    assert {"key": ".spec.nodeName", "operator": "In", "values": ["local"]} in annotated
    assert {"key": f'.metadata.annotations["{kwok_config.SIMULATE_ANNOTATION}"]', "operator": "In",
            "values": ["true"]} in annotated
    no_real = {s["metadata"]["name"] for s in yaml.safe_load_all(kwok_config.config_text(["gpu-0"], []))}
    assert "pod-ready-annotated" not in no_real


@pytest.mark.parametrize("overlay", overlay_names())
def test_every_worker_group_has_a_node_pool_that_fits(overlay):
    """The scheduler decides for real in test_localcluster.py; this names the missing pool without a cluster."""
    from kubernetes.utils.quantity import parse_quantity

    nodes = node_objects()
    service = next(o for o in render_overlay(overlay).objects if o["kind"] == "RayService")
    for group in service["spec"]["rayClusterConfig"]["workerGroupSpecs"]:
        template = group["template"]["spec"]
        selector = template.get("nodeSelector") or {}
        wants = template["containers"][0].get("resources", {}).get("requests", {})
        tolerated = {t.get("key") for t in template.get("tolerations") or []}
        fits = [n["name"] for n in nodes if all(n["labels"].get(k) == v for k, v in selector.items())
                and all(t["key"] in tolerated for t in n["taints"])
                and all(parse_quantity(n["capacity"].get(r, "0")) >= parse_quantity(q) for r, q in wants.items())]
        assert len(fits) >= group.get("replicas", 1), \
            f"{overlay}: worker group {group['groupName']} ({selector}, {wants}) fits on {fits}"


def test_tiny_overlay_changes_only_model_source_and_eager_and_mounts_the_model(tmp_path):
    from kuberay_llm.cluster.tiny_overlay import VOLUME

    original = render_overlay("local-cpu")
    tiny = render_overlay(str(tiny_overlay("local-cpu", tmp_path / "tiny")))
    before = {(o["kind"], o["metadata"]["name"]): o for o in original.objects}
    after = {(o["kind"], o["metadata"]["name"]): o for o in tiny.objects}
    assert before.keys() == after.keys()
    key = ("RayService", "local-cpu-llm")
    old_config = yaml.safe_load(before[key]["spec"].pop("serveConfigV2"))
    new_config = yaml.safe_load(after[key]["spec"].pop("serveConfigV2"))
    new_loading = new_config["applications"][0]["args"]["llm_configs"][0]["model_loading_config"]
    old_loading = old_config["applications"][0]["args"]["llm_configs"][0]["model_loading_config"]
    model = Path(new_loading["model_source"])
    assert model.name.startswith("tiny-llama-") and (model / "config.json").is_file()
    old_loading["model_source"] = new_loading["model_source"]
    # the one engine setting added: the tiny model runs eager (local/serve_config.py), the overlay sets none
    old_engine = old_config["applications"][0]["args"]["llm_configs"][0]["engine_kwargs"]
    assert "enforce_eager" not in old_engine
    old_engine["enforce_eager"] = True
    assert old_config == new_config
    cluster = after[key]["spec"]["rayClusterConfig"]
    for group in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]:
        spec = group["template"]["spec"]
        assert spec["volumes"].pop() == {"name": VOLUME, "hostPath": {"path": str(model.parent), "type": "Directory"}}
        mounts = spec["containers"][0]["volumeMounts"]
        assert mounts.pop() == {"name": VOLUME, "mountPath": str(model.parent), "readOnly": True}
        for field, container in (("volumes", spec), ("volumeMounts", spec["containers"][0])):
            if not container[field]:
                del container[field]  # the overlay had none: the list was added for the model
    assert before == after


def test_not_root_is_refused_with_what_it_needs(monkeypatch, tmp_path):
    from kuberay_llm.cluster import network
    from kuberay_llm.cluster.controlplane import Cluster
    from kuberay_llm.errors import UserError

    monkeypatch.setattr(network.os, "geteuid", lambda: 1000)
    with pytest.raises(UserError, match=r"^the local cluster needs root: it creates a network namespace and a veth "
                                        r"pair per pod, a bridge, and mount/PID namespaces for each container "
                                        r"\(CAP_NET_ADMIN and CAP_SYS_ADMIN\)\. Run it as root \(e\.g\. `sudo make "
                                        r"cluster`\)$"):
        Cluster(tmp_path).up()
    assert list(tmp_path.iterdir()) == []  # refused before writing anything
