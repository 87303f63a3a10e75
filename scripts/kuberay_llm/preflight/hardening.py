"""Check 4h: the production-hardening components (manifests/components/*) and how they compose.

Network: nothing exposes Ray's dashboard (8265: job submission runs arbitrary code), GCS (6379) or client
(10001) port outside the cluster; a GPU tier without NetworkPolicy gets a warning; the policies and the
PodMonitor select the pods they are meant for. Pods: a hardened RayService is hardened everywhere (every Ray
container and sidecar meets the `restricted` Pod Security Standard, or the one that cannot is named). Head
failure: the Redis password of GCS fault tolerance is never a literal, its address is one Ray can parse.
Weights: the model cache fits the checkpoint (the planner's catalog), the serve config loads from inside it,
the fill Job downloads what the serve config loads; runai_streamer reads from object storage. Composition:
the component pairs that cannot go together are named, and what the API server refuses after composing
(duplicate env, ports, volumes, container names in the CRD's list maps) is reported before it does.

Rules about other objects of the source (Services, Ingresses, NetworkPolicies, Jobs, PVCs, PVs) read them from
ctx["objects"] and report them once per source, with its first RayService.
"""

from __future__ import annotations

import functools
import importlib.util
import re

from kuberay_llm import kubenames, toolchain
from kuberay_llm.errors import UserError
from kuberay_llm.preflight.findings import ERROR, WARNING, Finding
from kuberay_llm.preflight.rayservice import GPU, RayGroup, RayServiceFacts, items, mapping

INSTANCE_LABEL = "app.kubernetes.io/instance"
# Ray ports that must never leave the cluster: the dashboard (job submission = arbitrary code, the operator's
# serve config API), the GCS and the Ray client server (KubeRay's port names: utils/constant.go).
PRIVATE_PORTS = {8265: "dashboard", 6379: "gcs-server", 10001: "client"}
EXPOSING_SERVICE_TYPES = ("LoadBalancer", "NodePort")
MODEL_CACHE_VOLUME = "model-cache"
MODEL_CACHE_FILL_JOB = "model-cache-fill"
GCSFUSE_DRIVER = "gcsfuse.csi.storage.gke.io"
BUCKET_PLACEHOLDER = "set-the-model-bucket"
CACHE_HEADROOM = 1.10  # the checkpoint plus 10%: hf's download state, a tokenizer, filesystem overhead
STREAMING_LOAD_FORMATS = ("runai_streamer", "runai_streamer_sharded")  # vLLM 0.29 model_loader/runai_*
OBJECT_STORE_SCHEMES = ("s3://", "gs://", "az://")
# Components recognised in a rendering by what only they add (container or init-container names).
COMPONENT_SIGNATURES = {
    "gke-a3": ("container", "tcpx-daemon"),
    "gke-a3-mega": ("container", "tcpxo-daemon"),
    "model-cache": ("initContainer", "wait-for-model-cache"),
}
# Pairs that cannot go together, and why (tests/test_hardening_compose.py renders every other pair).
INCOMPATIBLE = {
    frozenset({"gke-a3", "gke-a3-mega"}): "one worker group runs on one machine type: both add their GPUDirect "
                                          "daemon, NICs and the same NCCL variables",
    frozenset({"model-cache", "gke-gcsfuse"}): "gke-gcsfuse already includes model-cache (list only gke-gcsfuse)",
}
RESTRICTED_CAPABILITIES = ("NET_BIND_SERVICE",)


def _obj(rs: RayServiceFacts) -> str:
    return f"RayService/{rs.name}"


def _objects(ctx) -> list[dict]:
    return [o for o in ctx.get("objects") or [] if isinstance(o, dict)]


def _first_rayservice(rs: RayServiceFacts, ctx) -> bool:
    """Source-level rules report once: with the first RayService of the source."""
    for o in _objects(ctx):
        if o.get("kind") == "RayService":
            return o is rs.obj
    return True


def _name(o: dict) -> str:
    return str(mapping(o.get("metadata")).get("name") or "?")


def _ray_container(group: RayGroup) -> dict:
    return group.containers[0] if group.containers else {}


def _pod_labels(group: RayGroup) -> dict:
    return mapping(mapping(group.template.get("metadata")).get("labels"))


# --- network ---------------------------------------------------------------------------------------------------

def _private_port(port: dict) -> int | None:
    """The private Ray port a Service port exposes (by number or KubeRay's port name), or None."""
    for key in ("port", "targetPort"):
        value = port.get(key)
        if isinstance(value, int) and value in PRIVATE_PORTS:
            return value
        if isinstance(value, str):
            for number, name in PRIVATE_PORTS.items():
                if value == name or value == str(number):
                    return number
    return None


def rule_no_exposed_ray_ports(source, rs: RayServiceFacts, ctx) -> list[Finding]:
    """No LoadBalancer/NodePort Service or Ingress exposes the dashboard, GCS or client port."""
    out = []
    fix = ("expose only Serve's port 8000 (<name>-serve-svc); reach the dashboard with `kubectl port-forward "
           "svc/<name>-head-svc 8265`")
    head = mapping(rs.head.raw if rs.head else {})
    head_service_type = mapping(mapping(head.get("headService")).get("spec")).get("type")
    if head_service_type in EXPOSING_SERVICE_TYPES:
        out.append(Finding(ERROR, source, _obj(rs), f"spec.rayClusterConfig.headGroupSpec.headService.spec.type="
                           f"{head_service_type}", "publishes every head port, the dashboard (8265, runs "
                           "submitted code), GCS (6379) and client (10001) among them, outside the cluster", fix))
    if head.get("enableIngress") is True:
        out.append(Finding(ERROR, source, _obj(rs), "spec.rayClusterConfig.headGroupSpec.enableIngress=true",
                           "makes KubeRay create an Ingress to the dashboard (8265, runs submitted code)", fix))
    if not _first_rayservice(rs, ctx):
        return out
    for o in _objects(ctx):
        kind, name = o.get("kind"), _name(o)
        spec = mapping(o.get("spec"))
        if kind == "Service" and spec.get("type") in EXPOSING_SERVICE_TYPES:
            for i, port in enumerate(items(spec.get("ports"))):
                number = _private_port(mapping(port))
                if number:
                    out.append(Finding(ERROR, source, f"Service/{name}", f"spec.ports[{i}] (type {spec['type']})",
                                       f"exposes Ray's {PRIVATE_PORTS[number]} port {number} outside the cluster",
                                       fix))
        if kind == "Ingress":
            backends = [("spec.defaultBackend", mapping(spec.get("defaultBackend")))]
            for r, rule in enumerate(items(spec.get("rules"))):
                for p, path in enumerate(items(mapping(mapping(rule).get("http")).get("paths"))):
                    backends.append((f"spec.rules[{r}].http.paths[{p}].backend", mapping(mapping(path).get("backend"))))
            for where, backend in backends:
                port = mapping(mapping(backend.get("service")).get("port"))
                number = _private_port({"port": port.get("number"), "targetPort": port.get("name")})
                if number:
                    out.append(Finding(ERROR, source, f"Ingress/{name}", f"{where}.service.port",
                                       f"routes to Ray's {PRIVATE_PORTS[number]} port {number} from outside the "
                                       "cluster", fix))
    return out


def _selects(selector: dict, labels: dict) -> bool:
    match = mapping(selector.get("matchLabels"))
    if any(labels.get(k) != v for k, v in match.items()):
        return False
    for expr in items(selector.get("matchExpressions")):
        expr = mapping(expr)
        key, op, values = expr.get("key"), expr.get("operator"), items(expr.get("values"))
        if (op == "In" and labels.get(key) not in values) or (op == "NotIn" and labels.get(key) in values) or \
                (op == "Exists" and key not in labels) or (op == "DoesNotExist" and key in labels):
            return False
    return True


def rule_network_policy_on_gpu_tiers(source, rs: RayServiceFacts, ctx) -> list[Finding]:
    """A GPU RayService has a NetworkPolicy on its pods; a policy or PodMonitor for it selects its pods."""
    out = []
    policies = [o for o in _objects(ctx) if o.get("kind") == "NetworkPolicy"]
    monitors = [o for o in _objects(ctx) if o.get("kind") == "PodMonitor"]
    groups = rs.groups
    for kind, objs, field in (("NetworkPolicy", policies, "spec.podSelector"),
                              ("PodMonitor", monitors, "spec.selector")):
        for o in objs:
            selector = mapping(mapping(o.get("spec")).get("podSelector" if kind == "NetworkPolicy" else "selector"))
            wanted = mapping(selector.get("matchLabels")).get(INSTANCE_LABEL)
            if wanted is None or wanted != rs.name:
                continue  # selects by other labels, or another RayService's pods
            for g in groups:
                if not _selects(selector, _pod_labels(g)):
                    have = _pod_labels(g).get(INSTANCE_LABEL)
                    out.append(Finding(ERROR, source, f"{kind}/{_name(o)}", f"{field}.matchLabels.{INSTANCE_LABEL}="
                                       f"{wanted}", f"does not select the pods of {g.path} (their "
                                       f"{INSTANCE_LABEL} is {have if have is not None else 'missing'}): it "
                                       f"{'protects' if kind == 'NetworkPolicy' else 'scrapes'} nothing there",
                                       f"keep manifests/base's pod label {INSTANCE_LABEL} on every group's "
                                       "template (a patch that sets template.metadata as a whole removes it)"))
    if rs.gpu_workers:
        protected = any(_selects(mapping(mapping(p.get("spec")).get("podSelector")), _pod_labels(g))
                        for p in policies for g in rs.gpu_workers)
        if not protected:
            out.append(Finding(WARNING, source, _obj(rs), "(no NetworkPolicy)",
                               "has GPU workers but no NetworkPolicy selects its pods: any pod in the cluster can "
                               "reach the dashboard (8265, runs submitted code), the GCS (6379) and Serve (8000)",
                               "add ../../manifests/components/network-policy to the overlay's components (chart: "
                               "networkPolicy.enabled=true)"))
    return out


# --- pod security ----------------------------------------------------------------------------------------------

def _hardened(rs: RayServiceFacts) -> bool:
    """The RayService asks for hardened pods: some Ray container or pod runs as non-root (components/pod-security)."""
    for g in rs.groups:
        if mapping(_ray_container(g).get("securityContext")).get("runAsNonRoot") is True or \
                mapping(g.pod_spec.get("securityContext")).get("runAsNonRoot") is True:
            return True
    return False


def _restricted_problems(pod: dict, container: dict) -> list[tuple[str, str]]:
    """(field, problem) of one container against the `restricted` Pod Security Standard (Kubernetes'
    staging/src/k8s.io/pod-security-admission/policy checks: privileged, allowPrivilegeEscalation,
    capabilities, runAsNonRoot, runAsUser, seccompProfile)."""
    sc, psc = mapping(container.get("securityContext")), mapping(pod.get("securityContext"))
    out = []
    if sc.get("privileged") is True:
        out.append(("securityContext.privileged", "is true"))
    if sc.get("allowPrivilegeEscalation") is not False:
        out.append(("securityContext.allowPrivilegeEscalation", "must be false"))
    caps = mapping(sc.get("capabilities"))
    if "ALL" not in items(caps.get("drop")):
        out.append(("securityContext.capabilities.drop", "must contain ALL"))
    added = [c for c in items(caps.get("add")) if c not in RESTRICTED_CAPABILITIES]
    if added:
        out.append(("securityContext.capabilities.add", f"adds {', '.join(map(str, added))}"))
    if sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is not True:
        out.append(("securityContext.runAsNonRoot", "must be true (here or in the pod's securityContext)"))
    if sc.get("runAsUser", psc.get("runAsUser")) == 0:
        out.append(("securityContext.runAsUser", "is 0 (root)"))
    seccomp = mapping(sc.get("seccompProfile") or psc.get("seccompProfile")).get("type")
    if seccomp not in ("RuntimeDefault", "Localhost"):
        out.append(("securityContext.seccompProfile.type", "must be RuntimeDefault or Localhost"))
    return out


def rule_pod_security_everywhere(source, rs: RayServiceFacts, ctx) -> list[Finding]:
    """A hardened RayService is hardened in every container; what cannot be (GKE's GPUDirect daemon) is named."""
    if not _hardened(rs):
        return []
    out = []
    obj = _obj(rs)
    for g in rs.groups:
        spec = g.pod_spec
        host = [k for k in ("hostNetwork", "hostPID", "hostIPC") if spec.get(k) is True]
        host_paths = [mapping(v).get("name") for v in items(spec.get("volumes")) if "hostPath" in mapping(v)]
        for kind in ("initContainers", "containers"):
            for i, c in enumerate(items(spec.get(kind))):
                c = mapping(c)
                where = f"{g.path}.template.spec.{kind}[{i}]"
                problems = _restricted_problems(spec, c)
                if not problems:
                    continue
                if mapping(c.get("securityContext")).get("privileged") is True:
                    out.append(Finding(WARNING, source, obj, f"{where} ({c.get('name')})",
                                       "is privileged by design (GKE's GPUDirect receive daemon): this pod passes no "
                                       "Pod Security level but `privileged`, though its Ray container is hardened",
                                       "label the namespace pod-security.kubernetes.io/enforce=privileged (restricted "
                                       "or baseline namespaces refuse the pod)"))
                    continue
                field, problem = problems[0]
                more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
                out.append(Finding(ERROR, source, obj, f"{where}.{field}",
                                   f"{problem}{more}: the rest of the RayService runs hardened, this container would "
                                   "make the pod fail the `restricted` Pod Security Standard",
                                   "give it the securityContext of components/pod-security (chart: podSecurity.enabled)"))
        if host or host_paths:
            privileged = any(mapping(mapping(c).get("securityContext")).get("privileged") is True
                             for c in items(spec.get("containers")))
            if not privileged:
                what = ", ".join(host + [f"hostPath volume {n}" for n in host_paths])
                out.append(Finding(WARNING, source, obj, f"{g.path}.template.spec", f"uses {what}: the pod passes "
                                   "only the `privileged` Pod Security level", "remove them, or enforce privileged"))
    autoscaler = mapping(rs.cluster.get("autoscalerOptions"))
    if rs.cluster.get("enableInTreeAutoscaling") is True:
        problems = _restricted_problems({}, {"securityContext": autoscaler.get("securityContext")})
        if problems:
            field, problem = problems[0]
            out.append(Finding(ERROR, source, obj, f"spec.rayClusterConfig.autoscalerOptions.{field}",
                               f"{problem}: KubeRay adds the autoscaler sidecar to the head pod with this "
                               "securityContext, and the head pod fails the `restricted` Pod Security Standard",
                               "set autoscalerOptions.securityContext as components/pod-security does"))
    return out


def rule_auth_env_left_to_kuberay(source, rs: RayServiceFacts, ctx) -> list[Finding]:
    """With authOptions, KubeRay sets RAY_AUTH_MODE/RAY_AUTH_TOKEN itself and skips them if already there."""
    if mapping(rs.cluster.get("authOptions")).get("mode") != "token":
        return []
    out = []
    for g in rs.groups:
        for e, env in enumerate(items(_ray_container(g).get("env"))):
            name = mapping(env).get("name")
            if name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN"):
                out.append(Finding(ERROR, source, _obj(rs), f"{g.path}.template.spec.containers[0].env[{e}].name={name}",
                                   "is set by KubeRay from authOptions (controllers/ray/common/pod.go "
                                   "SetContainerTokenAuthEnvVars), which leaves a variable already present alone: "
                                   "this one would replace the cluster's token", "remove it"))
    return out


# --- head failure ----------------------------------------------------------------------------------------------

_REDIS_ADDRESS = re.compile(r"^(rediss?://)?(\[[0-9a-fA-F:]+\]|[^\s:/,@]+):\d{1,5}$")


def rule_gcs_fault_tolerance(source, rs: RayServiceFacts, ctx) -> list[Finding]:
    """GCS FT: the Redis password from a Secret, an address Ray and KubeRay's cleanup Job can parse."""
    ft = rs.cluster.get("gcsFaultToleranceOptions")
    if not isinstance(ft, dict):
        return []
    out, where = [], "spec.rayClusterConfig.gcsFaultToleranceOptions"
    for key in ("redisPassword", "redisUsername"):
        value = mapping(ft.get(key)).get("value")
        if key == "redisPassword" and isinstance(value, str) and value:
            out.append(Finding(ERROR, source, _obj(rs), f"{where}.redisPassword.value",
                               "is a literal Redis password in the manifest (and in git)",
                               "use redisPassword.valueFrom.secretKeyRef (components/gcs-fault-tolerance reads the "
                               "Secret ray-gcs-redis, key password)"))
    address = ft.get("redisAddress")
    if isinstance(address, str):
        bad = [a for a in address.split(",") if not _REDIS_ADDRESS.match(a.strip())]
        if not address.strip() or bad:
            out.append(Finding(ERROR, source, _obj(rs), f"{where}.redisAddress={address}",
                               "is not host:port: Ray's GCS and KubeRay's Redis cleanup Job read `host:port`, "
                               "`redis://host:port` or `rediss://host:port` (TLS), comma-separated for several",
                               "set e.g. redis://ray-gcs-redis:6379"))
    return out


# --- weights ---------------------------------------------------------------------------------------------------

@functools.cache
def _model_cache_script():
    """manifests/components/model-cache/model_cache.py: the fill Job's own parser of the serve config."""
    path = toolchain.REPO_ROOT / "manifests" / "components" / "model-cache" / "model_cache.py"
    spec = importlib.util.spec_from_file_location("kuberay_llm_model_cache", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _mount_of(group: RayGroup, volume: str) -> str | None:
    for m in items(_ray_container(group).get("volumeMounts")):
        if mapping(m).get("name") == volume and isinstance(mapping(m).get("mountPath"), str):
            return mapping(m)["mountPath"].rstrip("/") or "/"
    return None


def _claim_of(group: RayGroup, volume: str) -> str | None:
    for v in items(group.pod_spec.get("volumes")):
        v = mapping(v)
        if v.get("name") == volume:
            return mapping(v.get("persistentVolumeClaim")).get("claimName")
    return None


def _env_value(container: dict, name: str):
    for env in items(container.get("env")):
        if mapping(env).get("name") == name:
            return mapping(env).get("value")
    return None


def _checkpoint_bytes(repo: str) -> tuple[int, str] | None:
    from kuberay_llm.plan.catalog import find_model
    from kuberay_llm.plan.checkpoint import checkpoint

    try:
        model = find_model(repo)
    except UserError:
        return None
    return checkpoint(model).bytes, model.name


def _gib_text(nbytes: float) -> str:
    return f"{-(-nbytes // 2**30):.0f}Gi"


def rule_model_cache(source, rs: RayServiceFacts, ctx) -> list[Finding]:
    """The model cache holds the checkpoint, the serve config loads from it, the fill Job downloads the same."""
    out, obj = [], _obj(rs)
    objects = _objects(ctx)
    cached = [(w, _mount_of(w, MODEL_CACHE_VOLUME)) for w in rs.workers]
    cached = [(w, m) for w, m in cached if m]
    local = [e for e in rs.llm_entries if (e.model_source or "").startswith("/")]
    if not cached:
        for e in local:
            mounted = any(any(str(mapping(m).get("mountPath", "")).rstrip("/") and
                              e.model_source.startswith(str(mapping(m)["mountPath"]).rstrip("/") + "/")
                              for m in items(_ray_container(w).get("volumeMounts"))) for w in rs.workers)
            if not mounted:
                out.append(Finding(ERROR, source, obj, f"{e.path}.model_loading_config.model_source={e.model_source}",
                                   "is a local path, but no worker mounts a volume there: vLLM fails with "
                                   "'not a directory'", "add components/model-cache (chart: modelCache.enabled)"))
        return out
    script = _model_cache_script()
    group, mount = cached[0]
    for e in rs.llm_entries:
        if e.engine.get("load_format") in STREAMING_LOAD_FORMATS:
            continue
        src = e.model_source or ""
        if not src.startswith(mount + "/"):
            suggestion = f"{mount}/{src}" if re.fullmatch(r"[\w.-]+/[\w.-]+", src) else f"{mount}/<org>/<name>"
            out.append(Finding(ERROR, source, obj, f"{e.path}.model_loading_config.model_source={src}",
                               f"is not inside the model cache mounted at {mount}: every replica would download it "
                               "again, and the fill Job downloads nothing for it",
                               f"set model_source: {suggestion}"))
    wanted = script.model_dirs(str(rs.spec.get("serveConfigV2") or ""), mount)
    claim = _claim_of(group, MODEL_CACHE_VOLUME)
    pvc = next((o for o in objects if o.get("kind") == "PersistentVolumeClaim" and _name(o) == claim), None)
    pvs = {_name(o): o for o in objects if o.get("kind") == "PersistentVolume"}
    if claim and pvc is None:
        out.append(Finding(WARNING, source, obj, f"{group.path}.template.spec.volumes.{MODEL_CACHE_VOLUME}",
                           f"mounts PersistentVolumeClaim {claim}, which this source does not create: its size "
                           "was not checked", "render it together with components/model-cache"))
    bound_pv = pvs.get(str(mapping(pvc.get("spec")).get("volumeName"))) if pvc else None
    if bound_pv is not None:
        csi = mapping(mapping(bound_pv.get("spec")).get("csi"))
        if csi.get("driver") == GCSFUSE_DRIVER and csi.get("volumeHandle") in (None, "", BUCKET_PLACEHOLDER):
            out.append(Finding(ERROR, source, f"PersistentVolume/{_name(bound_pv)}",
                               f"spec.csi.volumeHandle={csi.get('volumeHandle')}", "is the placeholder of "
                               "components/gke-gcsfuse, not a bucket", "set your Cloud Storage bucket's name"))
    elif pvc is not None:
        size_text = mapping(mapping(mapping(pvc.get("spec")).get("resources")).get("requests")).get("storage")
        amount = kubenames.quantity(size_text)
        size = float(amount) if amount is not None else None
        need, names = 0.0, []
        for directory in wanted:
            found = _checkpoint_bytes(script.repo_id(directory, mount))
            if found is None:
                out.append(Finding(WARNING, source, f"PersistentVolumeClaim/{claim}", "spec.resources.requests.storage",
                                   f"{script.repo_id(directory, mount)} is not in the planner's catalog: the size "
                                   "of the cache was not checked", "add the model to scripts/kuberay_llm/data/models.yaml"))
                continue
            nbytes, name = found
            need += nbytes
            names.append(f"{name} {nbytes / 1e9:.0f} GB")
        if size is not None and need and size < need * CACHE_HEADROOM:
            out.append(Finding(ERROR, source, f"PersistentVolumeClaim/{claim}",
                               f"spec.resources.requests.storage={size_text}",
                               f"holds {size / 1e9:.0f} GB, but the checkpoint{'s' if len(names) > 1 else ''} "
                               f"({', '.join(names)}) plus 10% need {need * CACHE_HEADROOM / 1e9:.0f} GB: the fill "
                               "Job would stop with a full disk", f"request at least {_gib_text(need * CACHE_HEADROOM)}"))
    for o in objects:
        if o.get("kind") != "Job":
            continue
        for c in items(mapping(mapping(mapping(o.get("spec")).get("template")).get("spec")).get("containers")):
            c = mapping(c)
            job_config = _env_value(c, "SERVE_CONFIG")
            if job_config is None or "model_cache.py" not in " ".join(map(str, items(c.get("command")))):
                continue
            job_root = str(_env_value(c, "MODEL_CACHE_DIR") or "/models")
            got = script.model_dirs(str(job_config), job_root)
            if got != wanted or job_root.rstrip("/") != mount:
                out.append(Finding(ERROR, source, f"Job/{_name(o)}", f"spec.template.spec.containers.{c.get('name')}"
                                   ".env.SERVE_CONFIG", f"downloads {', '.join(got) or 'nothing'} into {job_root}, "
                                   f"but the RayService loads {', '.join(wanted) or 'nothing'} from {mount}: the "
                                   "workers would wait for it forever", "keep the Job's SERVE_CONFIG equal to "
                                   "serveConfigV2 (components/model-cache copies it; do not edit it by hand)"))
    for w, _ in cached:
        for c in items(w.pod_spec.get("initContainers")):
            c = mapping(c)
            if c.get("name") == "wait-for-model-cache" and \
                    script.model_dirs(str(_env_value(c, "SERVE_CONFIG") or ""), mount) != wanted:
                out.append(Finding(ERROR, source, obj, f"{w.path}.template.spec.initContainers.wait-for-model-cache"
                                   ".env.SERVE_CONFIG", "waits for other models than serveConfigV2 loads",
                                   "keep it equal to serveConfigV2 (components/model-cache copies it)"))
    return out


@functools.cache
def _ray_llm_requires_runai() -> bool:
    import importlib.metadata

    return any("runai" in r for r in importlib.metadata.requires("ray") or [] if 'extra == "llm"' in r)


def rule_streaming_load_format(source, rs: RayServiceFacts, ctx) -> list[Finding]:
    """load_format runai_streamer streams from object storage (or a local directory), never from a hub id."""
    out = []
    for e in rs.llm_entries:
        fmt = e.engine.get("load_format")
        if fmt not in STREAMING_LOAD_FORMATS:
            continue
        src = e.model_source or ""
        if not (src.startswith(OBJECT_STORE_SCHEMES) or src.startswith("/")):
            out.append(Finding(ERROR, source, _obj(rs), f"{e.path}.model_loading_config.model_source={src}",
                               f"is a Hugging Face repo id, but load_format {fmt} streams the safetensors from "
                               "object storage (vLLM's Run:ai Model Streamer) or a local directory",
                               "set model_source: gs://<bucket>/<path> or s3://<bucket>/<path> with the weights"))
        if not _ray_llm_requires_runai():
            out.append(Finding(WARNING, source, _obj(rs), f"{e.path}.engine_kwargs.load_format={fmt}",
                               "needs the runai-model-streamer package in the image, which ray[llm] of the pinned "
                               "Ray does not pull in (it requires vllm[audio], not vllm[runai])",
                               "use an image with `pip install runai-model-streamer[s3,gcs]`, and give the pods "
                               "the bucket's credentials"))
    return out


# --- composition -----------------------------------------------------------------------------------------------

def components_in(rs: RayServiceFacts) -> set[str]:
    """The components of COMPONENT_SIGNATURES whose traces are in this RayService."""
    found = set()
    for name, (kind, container) in COMPONENT_SIGNATURES.items():
        key = "initContainers" if kind == "initContainer" else "containers"
        if any(mapping(c).get("name") == container for g in rs.workers for c in items(g.pod_spec.get(key))):
            found.add(name)
    return found


def rule_components_compose(source, rs: RayServiceFacts, ctx) -> list[Finding]:
    """Name the component pairs that cannot go together; duplicates the CRD's list maps refuse; A3 needs 8 GPUs."""
    out, obj = [], _obj(rs)
    present = components_in(rs)
    for pair, why in INCOMPATIBLE.items():
        if pair <= present:
            a, b = sorted(pair)
            out.append(Finding(ERROR, source, obj, f"components {a} + {b}", f"cannot go together: {why}",
                               f"keep one of {a} and {b}"))
    for name in ("gke-a3", "gke-a3-mega"):
        if name in present:
            for w in rs.workers:
                if w.gpus_per_pod != 8:
                    out.append(Finding(ERROR, source, obj, f"{w.path} (component {name})",
                                       f"requests {w.gpus_per_pod} {GPU} per pod, but {name} gives each worker a "
                                       "whole 8-GPU A3 node for GPUDirect (its NIC and NCCL settings are per node)",
                                       "give the worker group 8 GPUs per pod, or drop the component"))
    # The RayService CRD declares env, containers and ports as list maps (x-kubernetes-list-type: map, keys
    # name / name / containerPort+protocol): the API server refuses a RayService with a repeated key.
    for g in rs.groups:
        for kind in ("initContainers", "containers"):
            for i, c in enumerate(items(g.pod_spec.get(kind))):
                c = mapping(c)
                where = f"{g.path}.template.spec.{kind}[{i}]"
                env_names: set = set()
                for e, env in enumerate(items(c.get("env"))):
                    name = mapping(env).get("name")
                    if name in env_names:
                        out.append(Finding(ERROR, source, obj, f"{where}.env[{e}].name={name}",
                                           "Duplicate value: the RayService CRD keys env by name, so the API server "
                                           "refuses the RayService (two components set the same variable)",
                                           "set it in one place"))
                    env_names.add(name)
                ports: set = set()
                for p, port in enumerate(items(c.get("ports"))):
                    key = (mapping(port).get("containerPort"), mapping(port).get("protocol") or "TCP")
                    if key in ports:
                        out.append(Finding(ERROR, source, obj, f"{where}.ports[{p}].containerPort={key[0]}",
                                           "Duplicate value: the RayService CRD keys ports by containerPort and "
                                           "protocol, so the API server refuses the RayService",
                                           "declare the port once (manifests/base declares 8080 as metrics)"))
                    ports.add(key)
    return out


# (rule, what it reads) as preflight/rules.py registers them: the cluster side only, or with the serve config.
RULES = [
    *((rule, ("cluster",)) for rule in (rule_no_exposed_ray_ports, rule_network_policy_on_gpu_tiers,
                                        rule_pod_security_everywhere, rule_auth_env_left_to_kuberay,
                                        rule_gcs_fault_tolerance, rule_components_compose)),
    *((rule, ("cluster", "serve")) for rule in (rule_model_cache, rule_streaming_load_format)),
]
