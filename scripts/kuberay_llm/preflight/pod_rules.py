"""Check 4b: what the API server refuses when KubeRay creates the head and worker pods.

A RayService embeds its pod templates; the API server checks them only against the CRD's structural schema
(types), not against the pod validation that runs when KubeRay later creates the Pods. A template that
breaks a pod rule is accepted at apply and then fails on the cluster with `FailedCreate` events and no pod.
Ported from Kubernetes v1.36.3, pkg/apis/core/validation/validation.go (validateContainers,
validateContainerCommon: a container's image is required, validateContainerPorts, ValidateEnv, ValidateVolumeMounts, validatePullPolicy,
validateResourceRequirements, ValidateResourceQuantityValue, validateContainerResourceName) and
pkg/apis/core/helper/helpers.go (IsOvercommitAllowed, IsExtendedResourceName), plus ObjectMeta's label and
annotation rules (apimachinery pkg/api/validation/objectmeta.go), and the pod names KubeRay derives
(ray-operator/controllers/ray/utils/util.go PodName: `<cluster>-<group>-worker-`, lower-cased, 50 characters).
"""

from __future__ import annotations

from kuberay_llm import kubenames
from kuberay_llm.preflight.findings import ERROR, Finding
from kuberay_llm.preflight.images import ray_containers
from kuberay_llm.preflight.rayservice import RayServiceFacts, items, mapping

PULL_POLICIES = ("Always", "IfNotPresent", "Never")
PROTOCOLS = ("SCTP", "TCP", "UDP")
STANDARD_CONTAINER_RESOURCES = ("cpu", "memory", "ephemeral-storage")
TOTAL_ANNOTATION_BYTES = 256 * 1024


def _extended(name: str) -> bool:
    """IsExtendedResourceName: a qualified name outside the kubernetes.io namespace."""
    native = "/" not in name or "kubernetes.io/" in name
    return not native and not name.startswith("requests.") and not kubenames.qualified_name("requests." + name)


def _resource_name_problem(name: str) -> str | None:
    if "/" not in name:
        if name not in STANDARD_CONTAINER_RESOURCES and not name.startswith("hugepages-"):
            return "must be a standard resource for containers (cpu, memory, ephemeral-storage, hugepages-*) or an " \
                   "extended resource with a domain (nvidia.com/gpu)"
    elif "kubernetes.io/" not in name and not _extended(name):
        return "doesn't follow extended resource name standard"
    return None


def _resources(source, obj, path: str, resources: dict) -> list[Finding]:
    out = []
    limits, requests = mapping(resources.get("limits")), mapping(resources.get("requests"))
    parsed = {}
    for kind, table in (("limits", limits), ("requests", requests)):
        for name, value in table.items():
            where = f"{path}.{kind}.{name}"
            problem = _resource_name_problem(str(name))
            if problem:
                out.append(Finding(ERROR, source, obj, where, f"{problem} (the API server refuses the pod)",
                                   "use cpu, memory, ephemeral-storage or a vendor resource such as nvidia.com/gpu"))
                continue
            amount = kubenames.quantity(value)
            if amount is None:
                continue  # the schema's quantity pattern reports it
            parsed[(kind, name)] = amount
            if amount < 0:
                out.append(Finding(ERROR, source, obj, f"{where}={value}",
                                   "must be a valid resource quantity: a negative amount (the API server refuses "
                                   "the pod)", "use 0 or more"))
            elif _extended(str(name)) and amount != int(amount):
                out.append(Finding(ERROR, source, obj, f"{where}={value}",
                                   f"must be an integer: {name} is an extended resource (the API server refuses "
                                   "the pod)", "request whole devices; share a GPU with Ray's fractional num_gpus "
                                   "inside the pod instead"))
    for name, request in requests.items():
        req = parsed.get(("requests", name))
        lim = parsed.get(("limits", name))
        if req is None:
            continue
        where = f"{path}.requests.{name}={request}"
        if _extended(str(name)) or str(name).startswith("hugepages-"):
            if lim is None:
                out.append(Finding(ERROR, source, obj, f"{path}.limits.{name}",
                                   f"Limit must be set for non overcommitable resources ({name} is requested) "
                                   "(the API server refuses the pod)", f"set limits.{name} equal to the request"))
            elif req != lim:
                out.append(Finding(ERROR, source, obj, where,
                                   f"must be equal to {name} limit of {limits[name]} (the API server refuses the pod)",
                                   "set the request and the limit to the same amount"))
        elif lim is not None and req > lim:
            out.append(Finding(ERROR, source, obj, where,
                               f"must be less than or equal to {name} limit of {limits[name]} (the API server "
                               "refuses the pod)", "lower the request or raise the limit"))
    return out


def _metadata(source, obj, path: str, meta: dict) -> list[Finding]:
    out = []
    for key, value in mapping(meta.get("labels")).items():
        for msg in kubenames.qualified_name(str(key)):
            out.append(Finding(ERROR, source, obj, f"{path}.labels.{key}", f"invalid label key: {msg}",
                               "use a qualified name: [prefix/]name, name of 63 characters or fewer"))
        for msg in kubenames.label_value(str(value)):
            out.append(Finding(ERROR, source, obj, f"{path}.labels.{key}={value}", f"invalid label value: {msg}",
                               "shorten the value or use an annotation"))
    annotations = mapping(meta.get("annotations"))
    for key in annotations:
        for msg in kubenames.qualified_name(str(key)):
            out.append(Finding(ERROR, source, obj, f"{path}.annotations.{key}", f"invalid annotation key: {msg}",
                               "use a qualified name: [prefix/]name"))
    size = sum(len(str(k).encode()) + len(str(v).encode()) for k, v in annotations.items())
    if size > TOTAL_ANNOTATION_BYTES:
        out.append(Finding(ERROR, source, obj, f"{path}.annotations",
                           f"total size {size} bytes exceeds {TOTAL_ANNOTATION_BYTES} (the API server refuses it)",
                           "move large values into a ConfigMap"))
    return out


def _container(source, obj, path: str, c: dict, volumes: set[str]) -> list[Finding]:
    out = []
    name = c.get("name")
    if isinstance(name, str):
        for msg in kubenames.dns1123_label(name):
            out.append(Finding(ERROR, source, obj, f"{path}.name={name}", f"invalid container name: {msg}",
                               "use lower-case letters, digits and '-'"))
    port_names: set[str] = set()
    for p, port in enumerate(items(c.get("ports"))):
        if not isinstance(port, dict):
            continue
        where = f"{path}.ports[{p}]"
        pname = port.get("name")
        if isinstance(pname, str) and pname:
            msgs = kubenames.port_name(pname)
            for msg in msgs:
                out.append(Finding(ERROR, source, obj, f"{where}.name={pname}", f"invalid port name: {msg}",
                                   "use up to 15 lower-case letters, digits and '-'"))
            if not msgs and pname in port_names:
                out.append(Finding(ERROR, source, obj, f"{where}.name={pname}", "Duplicate value: port names must be "
                                   "unique within a container", "rename one of the ports"))
            port_names.add(pname)
        for key in ("containerPort", "hostPort"):
            value = port.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and (key == "containerPort" or value != 0):
                for msg in kubenames.port_number(value):
                    out.append(Finding(ERROR, source, obj, f"{where}.{key}={value}", f"{msg} (the API server "
                                       "refuses the pod)", "use a port between 1 and 65535"))
        protocol = port.get("protocol")
        if protocol is not None and protocol not in PROTOCOLS:
            out.append(Finding(ERROR, source, obj, f"{where}.protocol={protocol}",
                               f"Unsupported value: supported values: {', '.join(PROTOCOLS)}", "use TCP"))
    for e, env in enumerate(items(c.get("env"))):
        if isinstance(env, dict) and isinstance(env.get("name"), str):
            for msg in kubenames.env_var_name(env["name"]):
                out.append(Finding(ERROR, source, obj, f"{path}.env[{e}].name={env['name']}", msg,
                                   "rename the variable"))
    mount_paths: set[str] = set()
    for m, mount in enumerate(items(c.get("volumeMounts"))):
        if not isinstance(mount, dict):
            continue
        where = f"{path}.volumeMounts[{m}]"
        if isinstance(mount.get("name"), str) and mount["name"] not in volumes:
            out.append(Finding(ERROR, source, obj, f"{where}.name={mount['name']}",
                               "Not found: no volume of the pod has this name (the API server refuses the pod)",
                               f"add the volume, or use one of: {', '.join(sorted(volumes)) or 'none defined'}"))
        mount_path = mount.get("mountPath")
        if isinstance(mount_path, str):
            if mount_path in mount_paths:
                out.append(Finding(ERROR, source, obj, f"{where}.mountPath={mount_path}", "must be unique",
                                   "mount each path once"))
            mount_paths.add(mount_path)
    policy = c.get("imagePullPolicy")
    if policy is not None and policy not in PULL_POLICIES:
        out.append(Finding(ERROR, source, obj, f"{path}.imagePullPolicy={policy}",
                           f"Unsupported value: supported values: {', '.join(PULL_POLICIES)}", "use IfNotPresent"))
    out += _resources(source, obj, f"{path}.resources", mapping(c.get("resources")))
    return out


def rule_pod_templates(source, rs: RayServiceFacts, ctx) -> list[Finding]:
    """Every head and worker pod template passes the API server's pod validation."""
    obj, out = f"RayService/{rs.name}", []
    out += _metadata(source, obj, "metadata", rs.metadata)
    ray_images = sorted({image for _, image in ray_containers(rs) if image})
    for group in rs.groups:
        spec = group.pod_spec
        out += _metadata(source, obj, f"{group.path}.template.metadata", mapping(group.template.get("metadata")))
        volumes: set[str] = set()
        for v, volume in enumerate(items(spec.get("volumes"))):
            vname = mapping(volume).get("name")
            if not isinstance(vname, str):
                continue
            where = f"{group.path}.template.spec.volumes[{v}].name={vname}"
            for msg in kubenames.dns1123_label(vname):
                out.append(Finding(ERROR, source, obj, where, f"invalid volume name: {msg}",
                                   "use lower-case letters, digits and '-'"))
            if vname in volumes:
                out.append(Finding(ERROR, source, obj, where, "Duplicate value: volume names must be unique",
                                   "rename one of the volumes"))
            volumes.add(vname)
        names: set[str] = set()
        for kind in ("containers", "initContainers"):
            for i, c in enumerate(items(spec.get(kind))):
                if not isinstance(c, dict):
                    continue
                path = f"{group.path}.template.spec.{kind}[{i}]"
                out += _image(source, obj, path, c, ray=kind == "containers" and i == 0, others=ray_images)
                out += _container(source, obj, path, c, volumes)
                if isinstance(c.get("name"), str):
                    if c["name"] in names:
                        out.append(Finding(ERROR, source, obj, f"{path}.name={c['name']}",
                                           "Duplicate value: container names must be unique in a pod",
                                           "rename one of the containers"))
                    names.add(c["name"])
        if not group.path.endswith("headGroupSpec"):
            out += _worker_pod_name(source, obj, group)
    return out


def _image(source, obj, path: str, c: dict, ray: bool, others: list[str]) -> list[Finding]:
    """validateContainerCommon: `if len(ctr.Image) == 0 { field.Required(path.Child("image"), "") }`; KubeRay
    copies the template's containers into the pods as they are (no default image)."""
    image = c.get("image")
    if isinstance(image, str) and image:
        return []
    what = ("the Ray container (KubeRay runs Ray in containers[0])" if ray
            else f"container {c.get('name') or '(no name)'}")
    if not ray:
        fix = "set the container's image"
    elif others:
        fix = f"set image: {others[0]} (the Ray image of the other groups)"
    else:
        fix = "set image: rayproject/ray-llm:<rayVersion>-py312-cu130 (Ray's image for the rayVersion)"
    return [Finding(ERROR, source, obj, f"{path}.image",
                    f"Required value: {what} has no image (the API server refuses every pod KubeRay creates "
                    "from this template)", fix)]


def _worker_pod_name(source, obj, group) -> list[Finding]:
    """KubeRay names worker pods `<cluster>-<groupName>-worker-<5>`, lower-cased: the group name must keep that a
    DNS-1123 subdomain (no '_', no spaces)."""
    name = group.raw.get("groupName")
    if not isinstance(name, str):
        return []
    sample = f"x-{name.lower()}-worker"
    if not kubenames.dns1123_subdomain(sample) and name:
        return []
    return [Finding(ERROR, source, obj, f"{group.path}.groupName={name}",
                    f"KubeRay puts the group name into its worker pod names (`<cluster>-{name.lower()}-worker-…`), "
                    "which the API server refuses: a pod name must be lower-case letters, digits, '-' and '.'",
                    "rename the group with letters, digits and '-' only")]


RULES = [rule_pod_templates]
