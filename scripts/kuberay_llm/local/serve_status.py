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

from kuberay_llm.errors import UserError
from kuberay_llm.harness.errors import Failed, TimedOut

READY, WAITING, FAILED = "ready", "waiting", "failed"
FAILED_APP_STATES = {"DEPLOY_FAILED", "UNHEALTHY"}
FAILED_DEPLOYMENT_STATES = {"UNHEALTHY", "DEPLOY_FAILED"}


@dataclass(frozen=True)
class Verdict:
    state: str  # READY, WAITING or FAILED
    message: str  # one line: what is still pending, or Ray's own error text


def verdict(applications: dict, expected: list[str]) -> Verdict:
    """READY when every expected application is RUNNING with all deployments HEALTHY; FAILED on a terminal state."""
    pending = []
    for name in expected:
        app = applications.get(name)
        if not app:
            pending.append(f"{name}: not created yet")
            continue
        status = app.get("status", "?")
        deployments = app.get("deployments") or app.get("serveDeploymentStatuses") or {}
        if status in FAILED_APP_STATES:
            return Verdict(FAILED, f"application {name} is {status}: {(app.get('message') or '').strip()}")
        for dep_name, dep in deployments.items():
            if dep.get("status") in FAILED_DEPLOYMENT_STATES:
                return Verdict(FAILED, f"deployment {name}/{dep_name} is {dep['status']}: "
                                       f"{(dep.get('message') or '').strip()}")
        unhealthy = [f"{d}={v.get('status')}" for d, v in deployments.items() if v.get("status") != "HEALTHY"]
        if status != "RUNNING" or unhealthy or not deployments:
            pending.append(f"{name}: {status}" + (f" ({', '.join(unhealthy)})" if unhealthy else ""))
    if pending:
        return Verdict(WAITING, "; ".join(pending))
    return Verdict(READY, ", ".join(f"{n}: RUNNING" for n in expected))


def wait_for_applications(fetch: Callable[[], dict], expected: list[str], *, timeout_s: float,
                          poll_s: float = 2.0, on_progress: Callable[[float, Verdict], None] | None = None,
                          clock: Callable[[], float] = time.monotonic,
                          sleep: Callable[[float], None] = time.sleep) -> Verdict:
    """Poll `fetch()` (the `applications` mapping) until READY; raise UserError on FAILED or at the deadline."""
    start = clock()
    last = Verdict(WAITING, "no status read yet")
    while True:
        last = verdict(fetch(), expected)
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
