"""The verdict on a RayService: healthy, failed (with the cause a person acts on), or still on its way.

Pure functions of what the API server says (the RayService, the pods of its RayCluster, their events) plus
the moments each trouble was first seen, so grace periods let transient states resolve. Status fields
follow KubeRay's RayService API (ray-operator/apis/ray/v1/rayservice_types.go).
"""

from __future__ import annotations

import dataclasses
import datetime
import re
import time

from kuberay_llm import settings
from kuberay_llm.plan import catalog

HEALTHY, FAILED, WAITING = "healthy", "failed", "waiting"

# Ray's messages when the Hugging Face Hub refuses a download (huggingface_hub errors, vLLM's wrapping)
_HF_AUTH = re.compile(
    r"gated repo|GatedRepoError|Access to model \S+ is restricted|Cannot access gated repo"
    r"|401 Client Error|403 Client Error|Invalid (user )?token|huggingface\.co\S*.{0,80}\b(401|403)\b"
    r"|\b(401|403)\b.{0,80}huggingface", re.I)
_IMAGE_PULL_FATAL = re.compile(r"not found|manifest unknown|unauthorized|denied|does not exist|invalid reference", re.I)
_INSUFFICIENT = re.compile(r"Insufficient (\S+)")
_TAINT = re.compile(r"untolerated taint\(?s?\)?\s*\{([^}]*)\}")


@dataclasses.dataclass
class Verdict:
    state: str
    summary: str  # one line: the cause of a failure, or the progress line
    details: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Observed:
    rayservice: dict | None
    pods: dict[str, dict]
    events: list[dict]
    logs: dict[str, str] = dataclasses.field(default_factory=dict)  # "pod/container" -> last lines


class Assessor:
    """Remembers since when each trouble has been seen, so a grace period can run out."""

    def __init__(self, clock=time.monotonic, wall=time.time):
        self.clock, self.wall = clock, wall
        self.first_seen: dict[str, tuple[float, float]] = {}  # trouble -> (first seen, its grace)
        self._seen_now: set[str] = set()

    def _persisted(self, key: str, grace: float) -> bool:
        """Note that `key` is seen now; True once it has been seen continuously for `grace` seconds."""
        self._seen_now.add(key)
        start, _ = self.first_seen.setdefault(key, (self.clock(), grace))
        self.first_seen[key] = (start, grace)
        return self.clock() - start >= grace

    def next_expiry(self) -> float | None:
        """Seconds until the earliest running grace period ends (the wait loop wakes up then)."""
        ends = [start + grace - self.clock() for start, grace in self.first_seen.values()]
        return max(0.0, min(ends)) if ends else None

    def assess(self, seen: Observed) -> Verdict:
        self._seen_now = set()
        try:
            return self._assess(seen)
        finally:  # troubles not seen this time are over: their grace restarts if they come back
            self.first_seen = {k: v for k, v in self.first_seen.items() if k in self._seen_now}

    # -- the rules -------------------------------------------------------------------------------------

    def _assess(self, seen: Observed) -> Verdict:
        rs = seen.rayservice
        name = f"{rs['metadata'].get('namespace')}/{rs['metadata']['name']}" if rs else "?"
        status = rs.get("status") or {}
        conditions = {c.get("type"): c for c in status.get("conditions") or []}
        ready = conditions.get("Ready") or {}

        if ready.get("status") == "False" and ready.get("reason") == "InitializingTimeout":
            return Verdict(FAILED, f"RayService {name} did not become ready within its ray.io/initializing-timeout "
                                   f"({ready.get('message') or 'InitializingTimeout'})")
        for event in _current_warnings(seen.events, rs):
            reason, message = event.get("reason"), " ".join((event.get("message") or "").split())
            fatal = "is invalid" in message or "forbidden" in message.lower() or "exceeded quota" in message
            if reason in ("InvalidRayServiceSpec", "InvalidRayServiceMetadata", "InvalidRayClusterSpec"):
                return Verdict(FAILED, f"KubeRay rejected RayService {name}: {reason}: {message}")
            if reason == "FailedToCreateRayCluster" and fatal:  # "already exists" is a cache race it retries
                return Verdict(FAILED, f"KubeRay cannot create the RayCluster of {name}: {message}")
            if reason in ("FailedToCreateHeadPod", "FailedToCreateWorkerPod") and fatal:
                involved = (event.get("involvedObject") or {}).get("name")
                return Verdict(FAILED, f"KubeRay cannot create the pods of RayCluster {involved}: {message}")

        verdict = self.assess_applications(applications_of(status)) or self._assess_placement(seen, status)
        if verdict:
            return verdict

        pod_verdict = self._assess_pods(seen)
        if pod_verdict:
            return pod_verdict

        progress = progress_line(seen)
        if rs is not None and is_healthy(rs):
            submitted = config_submitted_unanswered(rs, seen.events)
            if submitted is not None:
                settle = settings.config_settle()
                # Healthy counts once it holds for `settle` here, or once the submission is older than that by the
                # wall clock plus a margin for clock skew (a single look: `status`, `diagnose`).
                old = self.wall() - submitted.timestamp() >= settle + _CLOCK_SKEW_S
                if not old and not self._persisted(f"config-settle:{submitted.isoformat()}", settle):
                    return Verdict(WAITING, f"serve config submitted to Ray at {submitted:%H:%M:%S} UTC, no newer "
                                            f"status from KubeRay yet (healthy counts after {settle:.0f}s) | "
                                            + progress)
            return Verdict(HEALTHY, progress)
        return Verdict(WAITING, progress)

    def assess_applications(self, apps: list[tuple[str, str, dict]]) -> Verdict | None:
        """The failure verdict of Serve applications, or None while none has failed. One rule set for a
        RayService's applicationStatuses (`wait`, `status`, `diagnose`) and Serve's own REST API (`local`):
        DEPLOY_FAILED at once, a gated Hugging Face model at once, UNHEALTHY only after its grace (Serve
        restarts a replica that fails a health check, and that can resolve by itself)."""
        for where, app, app_status in apps:
            messages = [app_status.get("message") or ""] + [
                d.get("message") or "" for d in (app_status.get("serveDeploymentStatuses") or {}).values()]
            for message in messages:
                if _HF_AUTH.search(message):
                    return Verdict(FAILED, f"application {app} cannot download its model from Hugging Face "
                                           f"({_last_line(_hf_auth_line(message))}): the model is gated or the token "
                                           "is missing/invalid; add components/hf-token to the overlay, create the "
                                           "Secret hf-token (README, Gated models: the token from stdin) "
                                           "and accept the model's license on huggingface.co",
                                   _indent(message))
            state = app_status.get("status")
            if state == "DEPLOY_FAILED":
                # A failed rolling update says only "Failed to update the deployments [...]" on the application;
                # Ray's cause is the last line of the failed deployment's message (seen on the local cluster).
                failed = [(d, s.get("message")) for d, s in (app_status.get("serveDeploymentStatuses") or {}).items()
                          if s.get("status") == "DEPLOY_FAILED" and s.get("message")]
                causes = "".join(f"; {d}: {_last_line(m)}" for d, m in failed)
                return Verdict(FAILED, f"application {app}{where} DEPLOY_FAILED: {_last_line(app_status.get('message'))}"
                                       f"{causes}",
                               _indent("\n".join([app_status.get("message") or "", *(m for _, m in failed)])))
            unhealthy = [f"{d}: {_last_line(s.get('message'))}" for d, s in
                         (app_status.get("serveDeploymentStatuses") or {}).items() if s.get("status") == "UNHEALTHY"]
            if state == "UNHEALTHY" or unhealthy:
                if self._persisted(f"unhealthy:{app}", settings.unhealthy_grace()):
                    cause = "; ".join(unhealthy) or _last_line(app_status.get("message"))
                    return Verdict(FAILED, f"application {app}{where} UNHEALTHY for {settings.unhealthy_grace():.0f}s: "
                                           f"{cause}", _indent(app_status.get("message")))

        return None

    def _assess_pods(self, seen: Observed) -> Verdict | None:
        groups: dict[str, list[dict]] = {}
        for pod in seen.pods.values():
            groups.setdefault(_group_label(pod), []).append(pod)
        for pod_name, pod in sorted(seen.pods.items()):
            if (pod.get("metadata") or {}).get("deletionTimestamp"):
                continue
            for container in _container_statuses(pod):
                cname = container.get("name")
                waiting = (container.get("state") or {}).get("waiting") or {}
                reason = waiting.get("reason")
                last = ((container.get("lastState") or {}).get("terminated")
                        or (container.get("state") or {}).get("terminated") or {})
                if last.get("reason") == "OOMKilled":
                    limit = _container_spec(pod, cname).get("resources", {}).get("limits", {}).get("memory", "?")
                    return Verdict(FAILED, f"pod {pod_name} container {cname} was OOMKilled (memory limit {limit}): "
                                           "raise the group's memory limit or lower max_model_len/max_num_seqs",
                                   _indent(seen.logs.get(f"{pod_name}/{cname}")))
                if reason == "CrashLoopBackOff" and container.get("restartCount", 0) >= settings.crashloop_restarts():
                    code = last.get("exitCode")
                    why = f"exit code {code}" + (f", {last.get('reason')}" if last.get("reason") else "")
                    logs = seen.logs.get(f"{pod_name}/{cname}") or ""
                    tail = _last_line(logs) if logs else "no logs"
                    return Verdict(FAILED, f"pod {pod_name} container {cname} is in CrashLoopBackOff ({why}): {tail}",
                                   _indent(logs or waiting.get("message")))
                if reason in ("ErrImagePull", "ImagePullBackOff", "InvalidImageName"):
                    image = _container_spec(pod, cname).get("image") or container.get("image") or "?"
                    message = _pull_error(pod_name, image, waiting.get("message") or "", seen.events)
                    fatal = reason == "InvalidImageName" or _IMAGE_PULL_FATAL.search(message)
                    if fatal or self._persisted(f"pull:{pod_name}/{cname}", settings.image_pull_grace()):
                        hint = (f"; {_IMAGE_TAG_HINT}" if image.rsplit("/", 1)[-1].startswith("ray-llm:")
                                and _IMAGE_PULL_FATAL.search(message) else "")
                        return Verdict(FAILED, f"pod {pod_name} cannot pull image {image} ({reason}): "
                                               f"{message or 'check the tag and the registry credentials'}{hint}")
                if reason in ("CreateContainerConfigError", "CreateContainerError"):
                    return Verdict(FAILED, f"pod {pod_name} container {cname}: {reason}: {waiting.get('message')}")
            unschedulable = _unschedulable_condition(pod)
            if unschedulable:
                declined = [e for e in seen.events if e.get("reason") == "NotTriggerScaleUp"
                            and (e.get("involvedObject") or {}).get("name") == pod_name]
                scaling = any(e.get("reason") == "TriggeredScaleUp" and (e.get("involvedObject") or {}).get("name")
                              == pod_name for e in seen.events)
                grace = settings.unschedulable_grace()
                if scaling:
                    grace = max(grace, settings.scale_up_grace())
                if declined or self._persisted(f"unschedulable:{pod_name}", grace):
                    group = groups.get(_group_label(pod), [pod])
                    cause = explain_unschedulable(pod, len(group), unschedulable.get("message") or "")
                    extra = f"; cluster autoscaler: {declined[-1].get('message')}" if declined else ""
                    return Verdict(FAILED, cause + extra)
        return None

    def _assess_placement(self, seen: Observed, status: dict) -> Verdict | None:
        """A replica Serve cannot schedule because it asks for Ray's accelerator_type:<X> resource. Ray's message
        (Serve's deployment state, Ray 2.58 as seen on an H100 node): "... has 1 replicas that have taken more than
        30s to be scheduled. ... Resources required for each replica: [{"accelerator_type:L4": 0.001, "GPU": 1.0,
        "CPU": 1.0}], total resources available: {...}". Ray gives a GPU node accelerator_type:<its model> (H100
        for "NVIDIA H100 80GB HBM3"): when every GPU worker group selects a GPU model Ray names otherwise, the
        replica never places, so the verdict comes at once; when the models are not known from the pods, after the
        unschedulable grace (an autoscaler may still add a node of that model)."""
        gpu_models = None  # read from the pods once, and only when a replica waits for an accelerator type
        for where, app, app_status in applications_of(status):
            for deployment, dstatus in (app_status.get("serveDeploymentStatuses") or {}).items():
                message = dstatus.get("message") or ""
                wanted = _ACCELERATOR_WANTED.search(message) if _UNSCHEDULED_REPLICA.search(message) else None
                if not wanted:
                    continue
                accelerator = wanted.group(1)
                if gpu_models is None:
                    gpu_models = _worker_gpu_models(seen.pods)
                advertised = {t for _, types in gpu_models for t in types}
                known = gpu_models and all(types for _, types in gpu_models)
                head = (f"application {app}{where}: deployment {deployment} asks for Ray's accelerator_type:"
                        f"{accelerator} and its replica cannot be scheduled")
                if known and accelerator not in advertised:
                    models = ", ".join(sorted({label for label, _ in gpu_models}))
                    names = ", ".join(sorted(advertised))
                    return Verdict(FAILED, f"{head}: the GPU workers run on {models} nodes, which Ray names "
                                           f"accelerator_type:{names}; fix: set accelerator_type: {sorted(advertised)[0]} "
                                           "in the serve config, or remove it", _indent(message))
                if self._persisted(f"accelerator:{app}:{deployment}", settings.unschedulable_grace()):
                    return Verdict(FAILED, f"{head} for {settings.unschedulable_grace():.0f}s: no Ray node advertises "
                                           f"accelerator_type:{accelerator}; fix: set accelerator_type to the GPU your "
                                           "workers have (`ray status -v` on the head lists accelerator_type:* "
                                           "resources), or remove it", _indent(message))
        return None


_UNSCHEDULED_REPLICA = re.compile(r"replicas? that (?:have|has) taken more than \d+s to be scheduled")
_ACCELERATOR_WANTED = re.compile(r'Resources required for each replica: .*?"accelerator_type:([^"]+)"', re.S)
_GPU_MODEL_LABELS = ("nvidia.com/gpu.product", "cloud.google.com/gke-accelerator")


def _worker_gpu_models(pods: dict[str, dict]) -> list[tuple[str, list[str]]]:
    """(GPU model label, Ray accelerator types) of each GPU worker pod, from its nodeSelector and the planner's GPU
    catalog (data/gpus.yaml: node labels -> ray_accelerator_types; [] types: a model it does not know)."""
    by_label = {label: list(gpu.ray_accelerator_types) for gpu in catalog.gpus().values() for label in gpu.labels}
    models = []
    for pod in pods.values():
        spec = pod.get("spec") or {}
        asks = any(((c.get("resources") or {}).get("limits") or {}).get("nvidia.com/gpu") for c in spec.get("containers") or [])
        if not asks or (pod.get("metadata", {}).get("labels") or {}).get("ray.io/node-type") == "head":
            continue
        selector = spec.get("nodeSelector") or {}
        label = next((selector[k] for k in _GPU_MODEL_LABELS if k in selector), None)
        models.append((label or "unknown", by_label.get(label, []) if label else []))
    return models


def is_healthy(rs: dict) -> bool:
    """Ready=True for the current generation, every application RUNNING, every deployment HEALTHY, no upgrade."""
    status = rs.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    if (conditions.get("Ready") or {}).get("status") != "True":
        return False
    if (conditions.get("UpgradeInProgress") or {}).get("status") == "True":
        return False
    if status.get("observedGeneration") != rs["metadata"].get("generation"):
        return False
    return applications_healthy((status.get("activeServiceStatus") or {}).get("applicationStatuses") or {})


# KubeRay v1.6.2 ray-operator/controllers/ray/rayservice_controller.go: reconcileServe reads Ray's application
# statuses (getAndCheckServeStatus) *before* it submits a changed serve config (updateServeDeployment, which
# records the Normal event UpdatedServeApplications), and calculateStatus then writes the new observedGeneration
# with those older statuses; every reconcile requeues after ServiceDefaultRequeueDuration = 2 s, and the status is
# rewritten (lastUpdateTime) only when it changes. So a status whose lastUpdateTime is within 2 s of the latest
# submission may show the previous config RUNNING. Both times are whole seconds (metav1.Time): a status written
# by a later reconcile is at least 2 whole seconds later.
_KUBERAY_REQUEUE_S = 2
_CLOCK_SKEW_S = 30


def config_submitted_unanswered(rs: dict, events: list[dict]) -> datetime.datetime | None:
    """When KubeRay last submitted the serve config to the active cluster, if the RayService's status may
    predate Ray's answer to it (see above); None when the status is newer or nothing was submitted."""
    status = rs.get("status") or {}
    cluster = (status.get("activeServiceStatus") or {}).get("rayClusterName")
    updated = _time(status.get("lastUpdateTime"))
    if not cluster or updated is None:
        return None
    name, namespace = rs["metadata"]["name"], rs["metadata"].get("namespace")
    submitted = [_time(e.get("lastTimestamp") or e.get("eventTime") or e.get("firstTimestamp")) for e in events
                 if e.get("reason") == "UpdatedServeApplications"
                 and (e.get("involvedObject") or {}).get("kind") == "RayService"
                 and (e.get("involvedObject") or {}).get("name") == name
                 and (e.get("message") or "").endswith(f"{namespace}/{cluster}")]
    latest = max((t for t in submitted if t is not None), default=None)
    if latest is None or (updated - latest).total_seconds() >= _KUBERAY_REQUEUE_S:
        return None
    return latest


def _time(text: str | None) -> datetime.datetime | None:
    if not text:
        return None
    try:
        return datetime.datetime.fromisoformat(str(text).replace("Z", "+00:00")).astimezone(datetime.timezone.utc)
    except ValueError:
        return None


def applications_healthy(apps: dict) -> bool:
    """Serve's own readiness: at least one application, each RUNNING, each of its deployments HEALTHY."""
    if not apps:
        return False
    for app in apps.values():
        if app.get("status") != "RUNNING":
            return False
        deployments = app.get("serveDeploymentStatuses") or {}
        if not deployments or any(d.get("status") != "HEALTHY" for d in deployments.values()):
            return False
    return True


def progress_line(seen: Observed) -> str:
    rs = seen.rayservice
    if rs is None:
        return "RayService not found"
    status = rs.get("status") or {}
    if not status:
        return "no status yet (is the KubeRay operator running?) | " + pods_line(seen.pods)
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    ready = conditions.get("Ready") or {}
    parts = [f"Ready={ready.get('status', '?')}" + (f"({ready['reason']})" if ready.get("reason") else "")]
    if (conditions.get("UpgradeInProgress") or {}).get("status") == "True":
        parts.append("upgrading")
    if status.get("observedGeneration") != rs["metadata"].get("generation"):
        parts.append(f"generation {rs['metadata'].get('generation')} not yet observed")
    apps = applications_of(status)
    if apps:
        parts.append("apps " + ", ".join(
            f"{app}{where}={s.get('status', '?')}" + (
                "[" + ", ".join(f"{d}={ds.get('status', '?')}" for d, ds in
                                sorted((s.get("serveDeploymentStatuses") or {}).items())) + "]"
                if s.get("serveDeploymentStatuses") else "")
            for where, app, s in apps))
    else:
        parts.append("no applications yet")
    parts.append(pods_line(seen.pods))
    return " | ".join(parts)


def pods_line(pods: dict[str, dict]) -> str:
    live = [p for p in pods.values() if not (p.get("metadata") or {}).get("deletionTimestamp")]
    if not live:
        return "no pods yet"
    ready = sum(1 for p in live if _condition(p, "Ready").get("status") == "True")
    notes: dict[str, int] = {}
    for pod in live:
        note = pod_state(pod)
        if note != "ready":
            notes[note] = notes.get(note, 0) + 1
    detail = ", ".join(f"{n} {what}" for what, n in sorted(notes.items()))
    return f"pods {ready}/{len(live)} ready" + (f" ({detail})" if detail else "")


def pod_state(pod: dict) -> str:
    """One phrase per pod: ready, not scheduled yet, unschedulable, pulling image, starting, ..."""
    if _condition(pod, "Ready").get("status") == "True":
        return "ready"
    scheduled = _condition(pod, "PodScheduled")
    if scheduled.get("status") != "True" and not (pod.get("spec") or {}).get("nodeName"):
        if scheduled.get("reason") == "Unschedulable":
            return "unschedulable"
        return "not scheduled yet"
    for container in _container_statuses(pod):
        waiting = (container.get("state") or {}).get("waiting") or {}
        if waiting.get("reason"):
            return waiting["reason"]
    return (pod.get("status") or {}).get("phase", "Pending").lower()


def explain_unschedulable(pod: dict, pods_in_group: int, message: str) -> str:
    """'0/3 nodes are available: 3 Insufficient nvidia.com/gpu.' -> what the group needs and what is missing."""
    labels = (pod.get("metadata") or {}).get("labels") or {}
    group = labels.get("ray.io/group")
    if labels.get("ray.io/node-type") == "head" or group == "headgroup":
        who = "the head group"
    elif group:
        who = f"worker group {group}"
    else:
        who = f"pod {pod['metadata']['name']}"
    plural = "s" if pods_in_group != 1 else ""
    requests = _pod_requests(pod)
    causes = []
    insufficient = list(dict.fromkeys(r.rstrip(".,;") for r in _INSUFFICIENT.findall(message)))
    needs = ", ".join(f"{requests.get(r, '?')} free {r}" for r in insufficient)
    for resource in insufficient:
        causes.append(f"the cluster has no node with {requests.get(resource, '?')} free {resource}")
    if "node affinity/selector" in message or "didn't match Pod's node affinity" in message:
        selector = (pod.get("spec") or {}).get("nodeSelector") or {}
        causes.append("no node matches its node selector/affinity"
                      + (f" {', '.join(f'{k}={v}' for k, v in selector.items())}" if selector else ""))
    for taint in _TAINT.findall(message):
        causes.append(f"nodes carry a taint it does not tolerate ({{{taint}}})")
    if "no nodes available" in message:
        causes.append("the cluster has no nodes")
    head = f"{who} needs {pods_in_group} pod{plural}" + (f" with {needs} each" if needs else "")
    cause = "; ".join(causes) or "the scheduler cannot place it"
    return f"{head}; {cause} (scheduler: {message.strip() or 'Unschedulable'})"


# -- helpers ---------------------------------------------------------------------------------------------

_IMAGE_TAG_HINT = ("rayproject/ray-llm is published as <ray>-py312-cu130 only (`crane ls rayproject/ray-llm`); "
                   "`kuberay-llm validate` checks the tag offline")


def _pull_error(pod_name: str, image: str, waiting_message: str, events: list[dict]) -> str:
    """The kubelet's reason a pull failed. In ImagePullBackOff the container status may only say
    'Back-off pulling image "X"'; the cause (`... not found`, `401 Unauthorized`) is in the kubelet's newest
    `Failed` event on the pod ('Failed to pull image "X": rpc error: ...', pkg/kubelet/images/image_manager.go)."""
    failed = [e for e in events if e.get("reason") == "Failed"
              and (e.get("involvedObject") or {}).get("name") == pod_name
              and str(e.get("message") or "").startswith(f'Failed to pull image "{image}"')]
    if not failed:
        return waiting_message
    latest = max(failed, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
    cause = " ".join(str(latest.get("message")).split())
    cause = cause.split(": ", 1)[1] if cause.startswith("Failed to pull image") and ": " in cause else cause
    if waiting_message and waiting_message not in cause and _IMAGE_PULL_FATAL.search(waiting_message):
        return waiting_message
    return cause

def _current_warnings(events: list[dict], rs: dict | None) -> list[dict]:
    """Warning events newer than the last change of the RayService's spec: events live for an hour, and one
    about a spec that has since been fixed must not fail the wait for the new one."""
    changed = max((m.get("time") or "" for m in ((rs or {}).get("metadata") or {}).get("managedFields") or []
                   if m.get("subresource") != "status"), default="")
    return [e for e in events if e.get("type") == "Warning"
            and (e.get("lastTimestamp") or e.get("eventTime") or e["metadata"].get("creationTimestamp") or "")[:19]
            >= changed[:19]]


def applications_of(status: dict) -> list[tuple[str, str, dict]]:
    found = []
    for key, where in (("activeServiceStatus", ""), ("pendingServiceStatus", " (pending cluster)")):
        for app, app_status in sorted(((status.get(key) or {}).get("applicationStatuses") or {}).items()):
            found.append((where, app, app_status or {}))
    return found


def _condition(pod: dict, kind: str) -> dict:
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind:
            return condition
    return {}


def _unschedulable_condition(pod: dict) -> dict | None:
    scheduled = _condition(pod, "PodScheduled")
    if scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable":
        return scheduled
    return None


def _container_statuses(pod: dict) -> list[dict]:
    status = pod.get("status") or {}
    return list(status.get("initContainerStatuses") or []) + list(status.get("containerStatuses") or [])


def _container_spec(pod: dict, name: str) -> dict:
    spec = pod.get("spec") or {}
    for container in list(spec.get("initContainers") or []) + list(spec.get("containers") or []):
        if container.get("name") == name:
            return container
    return {}


def _pod_requests(pod: dict) -> dict[str, str]:
    """Requests of the pod's main containers (limits where a request is absent, as the API server defaults)."""
    totals: dict[str, str] = {}
    for container in (pod.get("spec") or {}).get("containers") or []:
        resources = container.get("resources") or {}
        for key, value in {**(resources.get("limits") or {}), **(resources.get("requests") or {})}.items():
            if key in totals and str(totals[key]).isdigit() and str(value).isdigit():
                totals[key] = str(int(totals[key]) + int(value))
            else:
                totals.setdefault(key, str(value))
    return totals


def _group_label(pod: dict) -> str:
    return ((pod.get("metadata") or {}).get("labels") or {}).get("ray.io/group", pod["metadata"]["name"])


def _hf_auth_line(message: str) -> str:
    for line in message.splitlines():
        if _HF_AUTH.search(line):
            return line
    return message


def _last_line(text: str | None) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1][:300] if lines else "(no message)"


def _indent(text: str | None, limit: int = 40) -> list[str]:
    lines = [line.rstrip() for line in (text or "").splitlines() if line.strip()]
    return ["  " + line for line in lines[-limit:]]
