"""`kuberay-llm status NAME`: the verdict of `wait`, once, and the application/deployment/pod states.

Exit codes (kuberay_llm/exitcodes.py): 0 healthy, 1 failed (cause printed), 2 usage, 3 cluster unreachable,
4 not healthy yet.
"""

from __future__ import annotations

import argparse

from kuberay_llm import exitcodes

from kuberay_llm.harness.errors import ConnectionFailed, Failed
from kuberay_llm.harness.health import FAILED, HEALTHY, Assessor, Observed, Verdict, applications_of, pod_state
from kuberay_llm.harness.kube import ApiError, Kube, Unreachable, forbidden_message
from kuberay_llm.harness.wait import Waiter, cluster_names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="RayService name")
    parser.add_argument("-n", "--namespace", help="namespace (default: the kube context's)")


def observe(kube: Kube, name: str, *, with_logs: bool = False) -> Observed:
    """One consistent-enough look at the RayService, its cluster's pods and their events."""
    try:
        return Waiter(kube, name, timeout=0).snapshot(with_logs=with_logs)
    except ApiError as err:
        if err.status in (401, 403):
            raise ConnectionFailed(forbidden_message(err)) from None
        if err.status == 404:
            raise ConnectionFailed(f"the cluster has no RayService API ({err.message}): install the KubeRay operator")
        raise ConnectionFailed(err.message) from None
    except Unreachable as exc:
        raise ConnectionFailed(str(exc)) from None


def verdict_of(seen: Observed) -> Verdict:
    return Assessor().assess(seen)


def state_lines(seen: Observed) -> list[str]:
    rs = seen.rayservice or {}
    status = rs.get("status") or {}
    lines = [f"clusters: {', '.join(sorted(cluster_names(rs))) or '-'}"]
    for condition in status.get("conditions") or []:
        lines.append(f"condition {condition.get('type')}={condition.get('status')} ({condition.get('reason', '')}): "
                     f"{condition.get('message', '')}")
    for key in ("activeServiceStatus", "pendingServiceStatus"):
        for app, app_status in ((status.get(key) or {}).get("applicationStatuses") or {}).items():
            where = "" if key == "activeServiceStatus" else " (pending cluster)"
            lines.append(f"application {app}{where}: {app_status.get('status')}")
            for dep, dep_status in (app_status.get("serveDeploymentStatuses") or {}).items():
                lines.append(f"  deployment {dep}: {dep_status.get('status')}")
    for name, pod in sorted(seen.pods.items()):
        labels = pod["metadata"].get("labels") or {}
        node = (pod.get("spec") or {}).get("nodeName") or "-"
        lines.append(f"pod {name} [{labels.get('ray.io/group', '?')}] {pod_state(pod)} on {node}")
    return lines


def startup_line(kube: Kube, seen: Observed) -> str | None:
    """While an LLM server deployment is UPDATING: how far its engine has got, in vLLM's log lines (harness/
    startup.py), read from the head pod's Ray dashboard. None when no deployment is starting or no head runs."""
    from kuberay_llm.harness import startup
    from kuberay_llm.harness.portforward import PortForward

    status = (seen.rayservice or {}).get("status") or {}
    starting = [dep for _, _, app in applications_of(status)
                for dep, dep_status in (app.get("serveDeploymentStatuses") or {}).items()
                if dep_status.get("status") == "UPDATING" and "LLM" in dep]
    heads = [name for name, pod in sorted(seen.pods.items())
             if (pod["metadata"].get("labels") or {}).get("ray.io/node-type") == "head"
             and (pod.get("status") or {}).get("phase") == "Running"]
    if not starting or not heads:
        return None
    pod = seen.pods[heads[-1]]
    port = next((p["containerPort"] for c in pod["spec"]["containers"] for p in c.get("ports") or []
                 if p.get("name") == "dashboard"), startup.DASHBOARD_PORT)
    try:
        with PortForward(kube, heads[-1], port) as local:
            return startup.replica_startup(f"http://127.0.0.1:{local}") or "no LLM server actor yet"
    except Exception as exc:  # noqa: BLE001 - the verdict above stands; this line only adds detail
        return f"unknown (the Ray dashboard of {heads[-1]} did not answer: {str(exc)[:200]})"


def run(args: argparse.Namespace) -> int:
    kube = Kube.connect(args.namespace)
    kube.check_reachable()
    seen = observe(kube, args.name)
    verdict = verdict_of(seen)
    label = {HEALTHY: "healthy", FAILED: "FAILED"}.get(verdict.state, "not healthy yet")
    print(f"RayService {kube.namespace}/{args.name}: {label}: {verdict.summary}")
    for line in state_lines(seen):
        print("  " + line)
    if verdict.state not in (HEALTHY, FAILED):
        line = startup_line(kube, seen)
        if line:
            print("  replica start-up: " + line)
    return {HEALTHY: exitcodes.OK, FAILED: exitcodes.FAILED}.get(verdict.state, exitcodes.PENDING)
