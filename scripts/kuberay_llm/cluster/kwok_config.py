"""kwok's configuration for the local cluster: the Stages (kwok.x-k8s.io/v1alpha1) that drive node and pod
status, written here rather than copied from kwok's defaults because the split below is ours.

- Every node: initialized to Ready with its capacity as allocatable and kwok's kubelet endpoint, then a
  heartbeat; kwok itself renews the node leases (--node-lease-duration-seconds).
- Pods kwok simulates (bound to a `runs: kwok` node, or annotated SIMULATE_ANNOTATION by the local kubelet
  when their namespace asks for it): Running and Ready at once with an IP from kwok's --cidr, deleted once
  their deletion is requested. No process runs behind them.
- Pods bound to a `runs: ray` node match no pod Stage: the local kubelet (kuberay_llm.cluster.kubelet) runs
  their containers and writes their status, as a kubelet does.
"""

from __future__ import annotations

import yaml

API_VERSION = "kwok.x-k8s.io/v1alpha1"
SIMULATE_ANNOTATION = "kuberay-llm.local/simulated"
# A node's heartbeat: conditions refreshed every 20-45 s (well inside the 40 s node lease kwok renews).
HEARTBEAT_MS, HEARTBEAT_JITTER_MS = 20_000, 45_000

NODE_STATUS = """\
{{ $now := Now }}
conditions:
{{ range NodeConditions }}
- lastHeartbeatTime: {{ $now | Quote }}
  lastTransitionTime: {{ $now | Quote }}
  message: {{ .message | Quote }}
  reason: {{ .reason | Quote }}
  status: {{ .status | Quote }}
  type: {{ .type | Quote }}
{{ end }}
addresses:
- address: {{ NodeIP | Quote }}
  type: InternalIP
- address: {{ .metadata.name | Quote }}
  type: Hostname
daemonEndpoints:
  kubeletEndpoint:
    Port: {{ NodePort }}
allocatable:
{{ YAML .status.capacity 1 }}
capacity:
{{ YAML .status.capacity 1 }}
nodeInfo:
  architecture: amd64
  operatingSystem: linux
  kubeletVersion: {{ printf "kwok-%s" Version | Quote }}
  kubeProxyVersion: ""
  containerRuntimeVersion: {{ printf "kwok-%s" Version | Quote }}
  kernelVersion: ""
  osImage: ""
  machineID: ""
  systemUUID: ""
  bootID: ""
phase: Running
"""

HEARTBEAT_STATUS = """\
{{ $now := Now }}
conditions:
{{ range NodeConditions }}
- lastHeartbeatTime: {{ $now | Quote }}
  lastTransitionTime: {{ $.metadata.creationTimestamp | Quote }}
  message: {{ .message | Quote }}
  reason: {{ .reason | Quote }}
  status: {{ .status | Quote }}
  type: {{ .type | Quote }}
{{ end }}
"""

POD_READY_STATUS = """\
{{ $now := Now }}
conditions:
- {type: PodScheduled, status: "True", lastTransitionTime: {{ $now | Quote }}}
- {type: Initialized, status: "True", lastTransitionTime: {{ $now | Quote }}}
- {type: ContainersReady, status: "True", lastTransitionTime: {{ $now | Quote }}}
- {type: Ready, status: "True", lastTransitionTime: {{ $now | Quote }}}
containerStatuses:
{{ range .spec.containers }}
- name: {{ .name | Quote }}
  image: {{ .image | Quote }}
  imageID: ""
  ready: true
  started: true
  restartCount: 0
  state: {running: {startedAt: {{ $now | Quote }}}}
{{ end }}
initContainerStatuses:
{{ range .spec.initContainers }}
- name: {{ .name | Quote }}
  image: {{ .image | Quote }}
  imageID: ""
  ready: true
  restartCount: 0
  state: {terminated: {exitCode: 0, reason: Completed, startedAt: {{ $now | Quote }}, finishedAt: {{ $now | Quote }}}}
{{ end }}
hostIP: {{ NodeIPWith .spec.nodeName | Quote }}
podIP: {{ PodIPWith .spec.nodeName false .metadata.uid .metadata.name .metadata.namespace | Quote }}
phase: Running
startTime: {{ $now | Quote }}
"""


def _stage(name: str, kind: str, expressions: list[dict], next_: dict, delay_ms: int | None = None,
           jitter_ms: int | None = None) -> dict:
    spec: dict = {"resourceRef": {"apiGroup": "v1", "kind": kind},
                  "selector": {"matchExpressions": expressions}, "next": next_}
    if delay_ms is not None:
        spec["delay"] = {"durationMilliseconds": delay_ms, "jitterDurationMilliseconds": jitter_ms or delay_ms}
    return {"apiVersion": API_VERSION, "kind": "Stage", "metadata": {"name": name}, "spec": spec}


def _expr(key: str, operator: str, values: list[str] | None = None) -> dict:
    expression = {"key": key, "operator": operator}
    if values is not None:
        expression["values"] = values
    return expression


READY = '.status.conditions.[] | select( .type == "Ready" ) | .status'


def stages(simulated_nodes: list[str], real_nodes: list[str]) -> list[dict]:
    """The Stages for a cluster whose pods on `simulated_nodes` kwok simulates and on `real_nodes` run."""
    docs = [
        _stage("node-initialize", "Node", [_expr(READY, "NotIn", ["True"])], {"statusTemplate": NODE_STATUS}),
        _stage("node-heartbeat", "Node", [_expr(".status.phase", "In", ["Running"]), _expr(READY, "In", ["True"])],
               {"statusTemplate": HEARTBEAT_STATUS}, HEARTBEAT_MS, HEARTBEAT_JITTER_MS),
    ]
    # kwok's selectors AND their expressions: "simulated" is one Stage set per way a pod can be simulated.
    selections = {"kwok-node": [_expr(".spec.nodeName", "In", simulated_nodes)]}
    if real_nodes:
        selections["annotated"] = [_expr(".spec.nodeName", "In", real_nodes),
                                   _expr(f'.metadata.annotations["{SIMULATE_ANNOTATION}"]', "In", ["true"])]
    for suffix, chosen in selections.items():
        if not chosen[0]["values"]:
            continue
        docs.append(_stage(f"pod-ready-{suffix}", "Pod", [
            *chosen, _expr(".metadata.deletionTimestamp", "DoesNotExist"),
            _expr(".status.podIP", "DoesNotExist")], {"statusTemplate": POD_READY_STATUS}))
        docs.append(_stage(f"pod-delete-{suffix}", "Pod", [
            *chosen, _expr(".metadata.deletionTimestamp", "Exists")], {"delete": True}, 500, 500))
    return docs


def config_text(simulated_nodes: list[str], real_nodes: list[str]) -> str:
    return yaml.safe_dump_all(stages(simulated_nodes, real_nodes), sort_keys=False)
