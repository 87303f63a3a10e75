"""Read Ray Serve's application statuses and wait until they are RUNNING and HEALTHY, or fail fast.

The same document shape comes from the dashboard (`GET /api/serve/applications/?api_type=declarative`
returns `{"applications": {name: {"status", "message", "deployments": {name: {"status", "message"}}}}}`)
and from a RayService's `status.activeServiceStatus.applicationStatuses` (KubeRay copies it there, with
`serveDeploymentStatuses` for the deployments), so `verdict` accepts both key spellings.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from kuberay_llm.errors import Failed, TimedOut
from kuberay_llm.harness.health import Assessor, applications_healthy

READY, WAITING, FAILED = "ready", "waiting", "failed"


@dataclass(frozen=True)
class Verdict:
    state: str  # READY, WAITING or FAILED
    message: str  # one line: what is still pending, or Ray's own error text


def as_rayservice_statuses(applications: dict) -> dict:
    """Serve's REST shape (`deployments`) in KubeRay's spelling (`serveDeploymentStatuses`), which the
    shared rules read."""
    return {name: {**app, "serveDeploymentStatuses": app.get("serveDeploymentStatuses") or app.get("deployments") or {}}
            for name, app in applications.items()}


def verdict(applications: dict, expected: list[str], assessor: Assessor | None = None) -> Verdict:
    """READY when every expected application is RUNNING with all deployments HEALTHY; FAILED by the same rules
    as `kuberay-llm wait` (harness/health.py: DEPLOY_FAILED at once, UNHEALTHY after its grace)."""
    apps = as_rayservice_statuses(applications)
    failed = (assessor or Assessor()).assess_applications([("", n, apps[n]) for n in expected if n in apps])
    if failed:
        text = failed.summary.replace(" DEPLOY_FAILED: ", " is DEPLOY_FAILED: ", 1)
        return Verdict(FAILED, "\n".join([text, *failed.details]))
    pending = []
    for name in expected:
        app = apps.get(name)
        if not app:
            pending.append(f"{name}: not created yet")
            continue
        deployments = app["serveDeploymentStatuses"]
        if not applications_healthy({name: app}):
            unhealthy = [f"{d}={v.get('status')}" for d, v in deployments.items() if v.get("status") != "HEALTHY"]
            pending.append(f"{name}: {app.get('status', '?')}" + (f" ({', '.join(unhealthy)})" if unhealthy else ""))
    if pending:
        return Verdict(WAITING, "; ".join(pending))
    return Verdict(READY, ", ".join(f"{n}: RUNNING" for n in expected))


def wait_for_applications(fetch: Callable[[], dict], expected: list[str], *, timeout_s: float,
                          poll_s: float = 2.0, on_progress: Callable[[float, Verdict], None] | None = None,
                          clock: Callable[[], float] = time.monotonic,
                          sleep: Callable[[float], None] = time.sleep) -> Verdict:
    """Poll `fetch()` (the `applications` mapping) until READY; raise Failed on FAILED, TimedOut at the deadline."""
    start = clock()
    last = Verdict(WAITING, "no status read yet")
    assessor = Assessor(clock=clock)  # remembers since when an application is UNHEALTHY (its grace)
    while True:
        last = verdict(fetch(), expected, assessor)
        elapsed = clock() - start
        if on_progress:
            on_progress(elapsed, last)
        if last.state == READY:
            return last
        if last.state == FAILED:
            raise Failed(last.message)
        if elapsed >= timeout_s:
            raise TimedOut(f"not ready after {timeout_s:.0f}s: {last.message} "
                            "(raise KUBERAY_LLM_LOCAL_TIMEOUT to wait longer)")
        sleep(poll_s)
