"""Check 4a: what the KubeRay operator refuses, before the RayService reaches it.

The RayService CRD's schema does not carry these rules: the operator checks them when it reconciles, and a
RayService that breaks one is accepted by the API server and then sits with an `InvalidRayServiceSpec` /
`InvalidRayServiceMetadata` event and no cluster. Ported from KubeRay v1.6.2,
ray-operator/controllers/ray/utils/validation.go (ValidateRayServiceMetadata, ValidateRayServiceSpec,
ValidateRayClusterSpec, ValidateClusterUpgradeOptions) with its constants (utils/constant.go) and feature-gate
defaults (pkg/features/features.go). The messages quote the operator's own where it has one.
"""

from __future__ import annotations

import re

from kuberay_llm import kubenames
from kuberay_llm.preflight.findings import ERROR, WARNING, Finding
from kuberay_llm.preflight.rayservice import RayGroup, RayServiceFacts, items, mapping

# utils/constant.go: MaxRayClusterNameLength 53; a RayService's cluster is `<name>-<5 random chars>`, so
# MaxRayServiceNameLength = 53 - 6.
MAX_RAYSERVICE_NAME = 53 - 6
INITIALIZING_TIMEOUT = "ray.io/initializing-timeout"
FT_ENABLED = "ray.io/ft-enabled"
EXTERNAL_STORAGE_NS = "ray.io/external-storage-namespace"
UPGRADE_TYPES = ("NewClusterWithIncrementalUpgrade", "NewCluster", "None")
RAY_START_RESOURCE_PARAMS = ("num-cpus", "num-gpus", "memory", "resources")
AUTOSCALER_V2_ENV = "RAY_enable_autoscaler_v2"

_GO_DURATION = re.compile(r"^[-+]?((\d+(\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h))+$")
_GO_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def go_duration_seconds(text: str) -> float | None:
    """Go's time.ParseDuration, in seconds, or None if Go would not parse it ("0" is a valid zero)."""
    if text in ("0", "+0", "-0"):
        return 0.0
    if not _GO_DURATION.match(text):
        return None
    sign = -1 if text.startswith("-") else 1
    total = sum(float(num) * _GO_UNIT[unit]
                for num, _, _, unit in re.findall(r"((\d+(\.\d*)?|\.\d+))(ns|us|µs|μs|ms|s|m|h)", text))
    return sign * total


def _env(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in items(container.get("env")) if isinstance(e, dict) and isinstance(e.get("name"), str)}


def _head_env(rs: RayServiceFacts) -> dict[str, dict]:
    return _env(rs.head.containers[0]) if rs.head and rs.head.containers else {}


def rule_kuberay_metadata(source, rs: RayServiceFacts, ctx) -> list[Finding]:
    """ValidateRayServiceMetadata: name length and syntax, the initializing-timeout annotation."""
    obj, out = f"RayService/{rs.name}", []
    name = rs.metadata.get("name")
    if isinstance(name, str) and name:
        if len(name) > MAX_RAYSERVICE_NAME:
            out.append(Finding(ERROR, source, obj, f"metadata.name={name}",
                               f"has {len(name)} characters: KubeRay refuses RayService names longer than "
                               f"{MAX_RAYSERVICE_NAME} (its RayCluster appends 6 and must stay within 53)",
                               f"shorten the name to {MAX_RAYSERVICE_NAME} characters or fewer"))
        for msg in kubenames.dns1035_label(name):
            if not msg.startswith("must be no more than"):  # the length is reported above, with KubeRay's limit
                out.append(Finding(ERROR, source, obj, f"metadata.name={name}",
                                   f"KubeRay refuses it: RayService name should be a valid DNS1035 label: {msg}",
                                   "use lower-case letters, digits and '-', starting with a letter"))
    timeout = mapping(rs.metadata.get("annotations")).get(INITIALIZING_TIMEOUT)
    if isinstance(timeout, str) and timeout:
        seconds = go_duration_seconds(timeout)
        if seconds is None and re.fullmatch(r"[-+]?\d+", timeout):
            seconds = float(int(timeout))
        if seconds is None or seconds <= 0:
            why = "has invalid format" if seconds is None else "must be a positive duration"
            out.append(Finding(ERROR, source, obj, f"metadata.annotations.{INITIALIZING_TIMEOUT}={timeout}",
                               f"KubeRay refuses the RayService: annotation {why}",
                               "use a Go duration such as 30m or 1h30m, or a positive number of seconds"))
    return out


def _group_rules(source, obj, group: RayGroup, autoscaling: bool, autoscaler_v2: bool, head_env) -> list[Finding]:
    out = []
    params = group.ray_start_params
    label = "Head" if group.path.endswith("headGroupSpec") else group.name
    if not group.containers:
        out.append(Finding(ERROR, source, obj, f"{group.path}.template.spec.containers",
                           "has no container: KubeRay refuses the RayService", "add the Ray container"))
    set_params = [p for p in RAY_START_RESOURCE_PARAMS if params.get(p)]
    if set_params and mapping(group.raw.get("resources")):
        out.append(Finding(ERROR, source, obj, f"{group.path}.resources",
                           f"resource fields should not be set in both rayStartParams ({', '.join(set_params)}) and "
                           f"Resources for {label} group (KubeRay refuses the RayService)",
                           "put every Ray resource in one of the two: resources, or rayStartParams"))
    if "labels" in params:
        out.append(Finding(ERROR, source, obj, f"{group.path}.rayStartParams.labels",
                           f"rayStartParams['labels'] is not supported for {label} group (KubeRay refuses it)",
                           "use the group's top-level labels field instead"))
    for key, value in mapping(group.raw.get("labels")).items():
        problems = kubenames.qualified_name(str(key)) + kubenames.label_value(str(value))
        for msg in problems:
            out.append(Finding(ERROR, source, obj, f"{group.path}.labels.{key}",
                               f"invalid Ray label for {label} group: {msg}", "fix the label key or value"))
    if group.path.endswith("headGroupSpec"):
        return out
    low, high = group.raw.get("minReplicas"), group.raw.get("maxReplicas")
    if not autoscaling and (low is None or high is None):
        out.append(Finding(ERROR, source, obj, f"{group.path}.minReplicas",
                           f"worker group {group.name} must set both minReplicas and maxReplicas when autoscaling "
                           "is disabled (KubeRay refuses the RayService)", "set minReplicas and maxReplicas"))
    for key, value in (("minReplicas", low), ("maxReplicas", high)):
        if isinstance(value, int) and value < 0:
            out.append(Finding(ERROR, source, obj, f"{group.path}.{key}={value}",
                               f"worker group {group.name} has negative {key} (KubeRay refuses the RayService)",
                               f"set {key} to 0 or more"))
    if isinstance(low, int) and isinstance(high, int) and low > high:
        out.append(Finding(ERROR, source, obj, f"{group.path}.minReplicas={low}",
                           f"worker group {group.name} has minReplicas {low} greater than maxReplicas {high} "
                           "(KubeRay refuses the RayService)", "raise maxReplicas or lower minReplicas"))
    idle = group.raw.get("idleTimeoutSeconds")
    if isinstance(idle, int):
        if idle < 0:
            out.append(Finding(ERROR, source, obj, f"{group.path}.idleTimeoutSeconds={idle}",
                               "must be non-negative (KubeRay refuses the RayService)", "set 0 or more"))
        elif not autoscaler_v2 and str(head_env.get(AUTOSCALER_V2_ENV, {}).get("value")) not in ("1", "true"):
            out.append(Finding(ERROR, source, obj, f"{group.path}.idleTimeoutSeconds={idle}",
                               "is set, but autoscaler v2 is not enabled (KubeRay refuses the RayService)",
                               "set spec.rayClusterConfig.autoscalerOptions.version: v2, or remove it"))
    if group.raw.get("suspend") is True and autoscaling:
        out.append(Finding(ERROR, source, obj, f"{group.path}.suspend",
                           f"worker group {group.name} cannot be suspended with Autoscaler enabled "
                           "(KubeRay refuses the RayService)", "remove suspend"))
    restart = group.pod_spec.get("restartPolicy")
    if autoscaler_v2 and restart not in (None, "", "Never"):
        out.append(Finding(ERROR, source, obj, f"{group.path}.template.spec.restartPolicy={restart}",
                           "should be Never or unset when using autoscaler V2 (KubeRay refuses the RayService)",
                           "remove restartPolicy"))
    return out


def rule_kuberay_cluster_spec(source, rs: RayServiceFacts, ctx) -> list[Finding]:
    """ValidateRayClusterSpec on rayClusterConfig, and the RayService-level rules of ValidateRayServiceSpec."""
    obj, out = f"RayService/{rs.name}", []
    cluster, spec = rs.cluster, rs.spec
    annotations = mapping(rs.metadata.get("annotations"))
    autoscaling = cluster.get("enableInTreeAutoscaling") is True
    autoscaler = mapping(cluster.get("autoscalerOptions"))
    autoscaler_v2 = autoscaler.get("version") == "v2"
    head_env = _head_env(rs)
    for group in rs.groups:
        out += _group_rules(source, obj, group, autoscaling, autoscaler_v2, head_env)
    head_params = rs.head.ray_start_params if rs.head else {}
    gcs_ft = cluster.get("gcsFaultToleranceOptions")
    where = "spec.rayClusterConfig"
    if annotations.get(FT_ENABLED) and gcs_ft is not None:
        out.append(Finding(ERROR, source, obj, f"metadata.annotations.{FT_ENABLED}",
                           f"{FT_ENABLED} annotation and GcsFaultToleranceOptions are both set (KubeRay refuses it)",
                           "use only gcsFaultToleranceOptions"))
    ft_on = str(annotations.get(FT_ENABLED, "")).lower() == "true" or gcs_ft is not None
    if not ft_on and "RAY_REDIS_ADDRESS" in head_env:
        out.append(Finding(ERROR, source, obj, f"{where}.headGroupSpec.template.spec.containers[0].env.RAY_REDIS_ADDRESS",
                           "implicitly enables GCS fault tolerance, but GcsFaultToleranceOptions is not set "
                           "(KubeRay refuses the RayService)", "set gcsFaultToleranceOptions.redisAddress instead"))
    if gcs_ft is not None:
        for bad, why in (("redis-password" in head_params and head_params["redis-password"], "rayStartParams.redis-password"),
                         ("REDIS_PASSWORD" in head_env, "env REDIS_PASSWORD"),
                         ("RAY_REDIS_ADDRESS" in head_env, "env RAY_REDIS_ADDRESS"),
                         (bool(annotations.get(EXTERNAL_STORAGE_NS)), f"annotation {EXTERNAL_STORAGE_NS}")):
            if bad:
                out.append(Finding(ERROR, source, obj, f"{where}.headGroupSpec ({why})",
                                   f"cannot be set when GcsFaultToleranceOptions is enabled (KubeRay refuses it)",
                                   "set it in gcsFaultToleranceOptions instead"))
    if head_params.get("redis-username") or "REDIS_USERNAME" in head_env:
        out.append(Finding(ERROR, source, obj, f"{where}.headGroupSpec (redis username)",
                           "cannot set redis username in rayStartParams or environment variables (KubeRay refuses it)",
                           "use gcsFaultToleranceOptions.redisUsername"))
    v2_env = head_env.get(AUTOSCALER_V2_ENV)
    if not autoscaling and v2_env and str(v2_env.get("value")) in ("1", "true"):
        out.append(Finding(ERROR, source, obj, f"{where}.headGroupSpec.template.spec.containers[0].env.{AUTOSCALER_V2_ENV}",
                           f"cannot be '{v2_env.get('value')}' when enableInTreeAutoscaling is false "
                           "(KubeRay refuses the RayService)", "set enableInTreeAutoscaling: true"))
    if autoscaling and autoscaler.get("version") is not None and v2_env:
        out.append(Finding(ERROR, source, obj, f"{where}.autoscalerOptions.version",
                           f"both .spec.autoscalerOptions.version and head Pod env var {AUTOSCALER_V2_ENV} are set "
                           "(KubeRay refuses the RayService)", "keep only autoscalerOptions.version"))
    idle = autoscaler.get("idleTimeoutSeconds")
    if isinstance(idle, int) and idle < 0:
        out.append(Finding(ERROR, source, obj, f"{where}.autoscalerOptions.idleTimeoutSeconds={idle}",
                           "must be non-negative (KubeRay refuses the RayService)", "set 0 or more"))
    auth = mapping(cluster.get("authOptions"))
    if auth.get("enableK8sTokenAuth") is True:
        out.append(Finding(ERROR, source, obj, f"{where}.authOptions.enableK8sTokenAuth",
                           "K8s token auth mode is currently not supported for RayService (KubeRay refuses it)",
                           "use authOptions.mode: token with a secret"))
    if auth.get("mode") == "token":
        version = str(cluster.get("rayVersion", ""))
        parts = tuple(int(p) for p in re.findall(r"\d+", version)[:3])
        if len(parts) < 2 or parts < (2, 52, 0):
            out.append(Finding(ERROR, source, obj, f"{where}.rayVersion={version or '(unset)'}",
                               "authOptions.mode is 'token', which needs Ray 2.52.0 or later (KubeRay refuses it)",
                               "use Ray 2.52.0 or later"))
    head_service = mapping(mapping(mapping(rs.head.raw if rs.head else {}).get("headService")).get("metadata"))
    if head_service.get("name"):
        out.append(Finding(ERROR, source, obj, f"{where}.headGroupSpec.headService.metadata.name",
                           "should not be set for a RayService (KubeRay refuses it)", "remove the name"))
    delay = spec.get("rayClusterDeletionDelaySeconds")
    if isinstance(delay, int) and delay < 0:
        out.append(Finding(ERROR, source, obj, f"spec.rayClusterDeletionDelaySeconds={delay}",
                           "should be a non-negative integer (KubeRay refuses the RayService)", "set 0 or more"))
    return out


def rule_kuberay_upgrade_strategy(source, rs: RayServiceFacts, ctx) -> list[Finding]:
    """Only NewClusterWithIncrementalUpgrade, NewCluster and None; incremental upgrades need their options."""
    obj = f"RayService/{rs.name}"
    strategy = mapping(rs.spec.get("upgradeStrategy"))
    kind = strategy.get("type")
    if kind is None:
        return []
    if kind not in UPGRADE_TYPES:
        return [Finding(ERROR, source, obj, f"spec.upgradeStrategy.type={kind}",
                        f"is invalid, valid options are {', '.join(UPGRADE_TYPES)} (KubeRay refuses the RayService)",
                        "use NewCluster (blue/green, twice the GPUs during an upgrade) or None")]
    if kind != "NewClusterWithIncrementalUpgrade":
        return []
    out = [Finding(WARNING, source, obj, f"spec.upgradeStrategy.type={kind}",
                   "needs the operator's RayServiceIncrementalUpgrade feature gate (alpha, off by default in KubeRay "
                   "v1.6.2) and a Gateway API implementation; without the gate KubeRay ignores the options",
                   "start the operator with --feature-gates=RayServiceIncrementalUpgrade=true")]
    path = "spec.upgradeStrategy.clusterUpgradeOptions"
    options = strategy.get("clusterUpgradeOptions")
    if rs.cluster.get("enableInTreeAutoscaling") is not True:
        out.append(Finding(ERROR, source, obj, "spec.rayClusterConfig.enableInTreeAutoscaling",
                           "Ray Autoscaler is required for NewClusterWithIncrementalUpgrade", "set it to true"))
    if not isinstance(options, dict):
        out.append(Finding(ERROR, source, obj, path, "ClusterUpgradeOptions are required for "
                           "NewClusterWithIncrementalUpgrade", "set gatewayClassName, stepSizePercent, intervalSeconds"))
        return out
    for key, low, high, required in (("maxSurgePercent", 0, 100, False), ("stepSizePercent", 0, 100, True)):
        value = options.get(key)
        if (value is None and required) or (isinstance(value, int) and not low <= value <= high):
            out.append(Finding(ERROR, source, obj, f"{path}.{key}", f"must be between {low} and {high}",
                               f"set {key} between {low} and {high}"))
    interval = options.get("intervalSeconds")
    if not isinstance(interval, int) or interval <= 0:
        out.append(Finding(ERROR, source, obj, f"{path}.intervalSeconds", "must be greater than 0", "set it"))
    if not options.get("gatewayClassName"):
        out.append(Finding(ERROR, source, obj, f"{path}.gatewayClassName",
                           "is required for NewClusterWithIncrementalUpgrade", "name the GatewayClass"))
    return out


RULES = [rule_kuberay_metadata, rule_kuberay_cluster_spec, rule_kuberay_upgrade_strategy]
