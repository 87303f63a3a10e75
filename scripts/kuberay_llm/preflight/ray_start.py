"""Check 4k: every rayStartParams key is an option of the pinned Ray's own `ray start`.

KubeRay v1.6.2 turns each key into one flag of the Ray container's command, `ray start --<key>=<value>` (a
"true" value as `--<key>` alone, a "false" one dropped; ray-operator/controllers/ray/common/pod.go
convertParamMap). `ray start` is a click command (Ray 2.60.0 python/ray/scripts/scripts.py): an option it does
not have ends the container at start with click's "No such option", and the pod restarts forever. This check asks
that very command: its parser decides, in its own words.
"""

from __future__ import annotations

import functools

from kuberay_llm.preflight.findings import ERROR, Finding
from kuberay_llm.preflight.rayservice import RayServiceFacts


@functools.cache
def _ray_start():
    try:
        from ray.scripts.scripts import start
    except ImportError:
        return None
    return start


def refusal(key: str) -> str | None:
    """What the pinned `ray start` says of the flag KubeRay makes of `key`, or None if it takes it."""
    import click

    start = _ray_start()
    if start is None:
        return None
    try:
        start.make_context("start", [f"--{key}=1"], resilient_parsing=False)
    except click.NoSuchOption as exc:
        return exc.format_message()
    except click.UsageError:
        return None  # the option exists; its value is another rule's (ray_resources: num-cpus, num-gpus)
    return None


def rule_ray_start_options(source, rs: RayServiceFacts, ctx) -> list[Finding]:
    obj, out = f"RayService/{rs.name}", []
    for group in rs.groups:
        for key in group.ray_start_params:
            message = refusal(str(key))
            if message:
                out.append(Finding(ERROR, source, obj, f"{group.path}.rayStartParams.{key}",
                                   f"KubeRay passes it as `ray start --{key}=...`, which Ray refuses: {message}: the "
                                   f"{group.name} pods' Ray never starts",
                                   "spell it as `ray start --help` does (dashes, not underscores), or remove it"))
    return out


RULES = [rule_ray_start_options]
