"""Check 4k: the timeouts that end a deployment's start are above its predicted cold start.

KubeRay marks a RayService Ready=False/InitializingTimeout (and stops waiting for it) once
`ray.io/initializing-timeout` passes without it serving; `kuberay-llm wait` gives up after its own wait timeout
(KUBERAY_LLM_WAIT_TIMEOUT). Either below the predicted apply -> HEALTHY (kuberay_llm.plan.coldstart: image pull,
weights download and load, vLLM's start-up, Ray + KubeRay + Serve) ends a start that would have succeeded: a
warning, since the prediction rests on assumed download speeds. Nothing is said when the planner cannot place the
model on a known GPU.
"""

from __future__ import annotations

import math

from kuberay_llm import settings
from kuberay_llm.errors import UserError
from kuberay_llm.plan import coldstart
from kuberay_llm.plan.accounting import plan
from kuberay_llm.plan.overlay import gpu_shape, plan_input
from kuberay_llm.preflight.findings import WARNING, Finding
from kuberay_llm.preflight.kuberay_rules import INITIALIZING_TIMEOUT, go_duration_seconds
from kuberay_llm.preflight.rayservice import RayServiceFacts, mapping


def _minutes(seconds: float) -> str:
    """A Go-style duration, as the annotation is written: 90 -> 1m30s, 600 -> 10m."""
    minutes, rest = divmod(round(seconds), 60)
    return (f"{minutes}m" if minutes else "") + (f"{rest}s" if rest or not minutes else "")


def _predicted(rs: RayServiceFacts, entry) -> float | None:
    shape = gpu_shape(rs.obj, entry)
    if shape.gpu is None:
        return None
    try:
        inputs = plan_input(entry, shape.gpu)
        if not plan(inputs).fits:
            return None
    except UserError:
        return None
    source = str(entry.model_source or entry.model_id or "")
    load_format = str(entry.setting("load_format", "auto"))
    return coldstart.predict(inputs.model, inputs.gpu, tp=inputs.tp, pp=inputs.pp, model_source=source,
                             load_format=load_format).seconds


def rule_timeouts_cover_the_cold_start(source, rs: RayServiceFacts, ctx) -> list[Finding]:
    """ray.io/initializing-timeout and the harness's wait timeout against the predicted cold start."""
    predictions = [p for p in (_predicted(rs, e) for e in rs.llm_entries if not e.on_cpu) if p is not None]
    if not predictions:
        return []
    predicted = max(predictions)
    obj, out = f"RayService/{rs.name}", []
    suggest = f"{math.ceil(predicted * 1.5 / 60)}m"
    annotation = mapping(rs.metadata.get("annotations")).get(INITIALIZING_TIMEOUT)
    timeout = go_duration_seconds(annotation) if isinstance(annotation, str) else None
    if timeout is not None and 0 < timeout < predicted:
        out.append(Finding(WARNING, source, obj, f"metadata.annotations.{INITIALIZING_TIMEOUT}={annotation}",
                           f"below the predicted cold start of {_minutes(predicted)} (apply -> HEALTHY): KubeRay marks "
                           "the RayService InitializingTimeout before it can serve",
                           f"raise it to {suggest} or more (`kuberay-llm plan {source}` prints the estimate's terms)"))
    wait = settings.wait_timeout()
    if wait < predicted:
        out.append(Finding(WARNING, source, obj, "KUBERAY_LLM_WAIT_TIMEOUT",
                           f"the harness's wait timeout {_minutes(wait)} is below the predicted cold start of "
                           f"{_minutes(predicted)}: `kuberay-llm wait` gives up before the RayService can serve",
                           f"export KUBERAY_LLM_WAIT_TIMEOUT={suggest}"))
    return out


RULES = [rule_timeouts_cover_the_cold_start]
