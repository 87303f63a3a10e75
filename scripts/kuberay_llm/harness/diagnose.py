"""`kuberay-llm diagnose NAME`: what a person looks at next, on one screen: the verdict, the RayService
status, its events, each pod's conditions and container states, and the last log lines of each container."""

from __future__ import annotations

import argparse

from kuberay_llm import exitcodes, settings
from kuberay_llm.harness.health import FAILED, HEALTHY
from kuberay_llm.harness.kube import Kube
from kuberay_llm.harness.status import observe, state_lines, verdict_of
from kuberay_llm.harness.wait import fetch_logs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="RayService name")
    parser.add_argument("-n", "--namespace", help="namespace (default: the kube context's)")
    parser.add_argument("--log-lines", type=int, default=None,
                        help="log lines per container (default KUBERAY_LLM_LOG_LINES or 20)")


def _container_state(status: dict) -> str:
    state = status.get("state") or {}
    for kind in ("waiting", "running", "terminated"):
        if kind in state:
            detail = state[kind] or {}
            text = kind + (f" {detail.get('reason')}" if detail.get("reason") else "")
            if detail.get("exitCode") is not None:
                text += f" exit {detail['exitCode']}"
            if detail.get("message"):
                text += f": {' '.join(detail['message'].split())[:300]}"
            break
    else:
        text = "no state"
    last = (status.get("lastState") or {}).get("terminated")
    if last:
        text += f" (last: {last.get('reason')} exit {last.get('exitCode')})"
    return f"{text}, restarts {status.get('restartCount', 0)}"


def run(args: argparse.Namespace) -> int:
    kube = Kube.connect(args.namespace)
    kube.check_reachable()
    seen = observe(kube, args.name, with_logs=True)
    verdict = verdict_of(seen)
    label = {HEALTHY: "healthy", FAILED: "FAILED"}.get(verdict.state, "not healthy yet")
    print(f"== RayService {kube.namespace}/{args.name}: {label}: {verdict.summary}")
    for line in verdict.details:
        print(line)
    for line in state_lines(seen):
        print("  " + line)
    status = (seen.rayservice or {}).get("status") or {}
    for key in ("activeServiceStatus", "pendingServiceStatus"):
        for app, app_status in ((status.get(key) or {}).get("applicationStatuses") or {}).items():
            if app_status.get("message"):
                print(f"== application {app} message")
                print("\n".join("  " + line for line in app_status["message"].splitlines()[-settings.log_lines():]))
    print("== events")
    for event in seen.events[-30:] or [{"message": "(none)"}]:
        involved = event.get("involvedObject") or {}
        when = event.get("lastTimestamp") or event.get("eventTime") or ""
        count = f" x{event['count']}" if event.get("count", 1) > 1 else ""
        where = f"{involved.get('kind', '')}/{involved.get('name', '')}" if involved else ""
        print(f"  {when} {event.get('type', '')} {event.get('reason', '')}{count} {where}: "
              f"{' '.join((event.get('message') or '').split())}")
    lines = args.log_lines or settings.log_lines()
    for name, pod in sorted(seen.pods.items()):
        print(f"== pod {name} ({(pod.get('status') or {}).get('phase', '?')})")
        for condition in (pod.get("status") or {}).get("conditions") or []:
            message = f": {condition['message']}" if condition.get("message") else ""
            reason = f" ({condition['reason']})" if condition.get("reason") else ""
            print(f"  condition {condition.get('type')}={condition.get('status')}{reason}{message}")
        statuses = {s["name"]: s for s in ((pod.get("status") or {}).get("initContainerStatuses") or [])
                    + ((pod.get("status") or {}).get("containerStatuses") or [])}
        for container in (pod.get("spec") or {}).get("containers") or []:
            cname = container["name"]
            state = _container_state(statuses[cname]) if cname in statuses else "not started"
            print(f"  container {cname}: {state}")
            if cname in statuses:
                previous = bool((statuses[cname].get("lastState") or {}).get("terminated"))
                log = fetch_logs(kube, kube.namespace, name, cname, previous=previous, lines=lines)
                print("\n".join("    " + line for line in log.splitlines()[-lines:]) or "    (empty log)")
    return {HEALTHY: exitcodes.OK, FAILED: exitcodes.FAILED}.get(verdict.state, exitcodes.PENDING)
