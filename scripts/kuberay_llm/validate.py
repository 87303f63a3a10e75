"""`kuberay-llm validate`: offline preflight of overlays and manifest files.

1. render (pinned kustomize; plain files and stdin are read as they are);
2. every object against the Kubernetes and KubeRay schemas, strictly (preflight/schema.py);
3. every serveConfigV2 against Ray's own models (preflight/serve_config.py);
4. cross-field rules (preflight/rules.py).

Exit codes (kuberay_llm/exitcodes.py): 0 valid, 1 invalid, 2 usage or input a tool rejects, 3 a tool
missing (`make tools`).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import sys
import time

from kuberay_llm import render
from kuberay_llm.errors import UserError
from kuberay_llm.preflight import import_paths, rules, schema, serve_config
from kuberay_llm.preflight.findings import ERROR, Finding
from kuberay_llm.preflight.rayservice import facts


def pinned_ray() -> str:
    import importlib.metadata

    return importlib.metadata.version("ray")


def _result(future):
    try:
        return future.result()
    except UserError as err:
        return err


def check_rendered(rendered: render.Rendered, schema_findings: list[Finding] | None = None) -> list[Finding]:
    """Checks 2 to 4 of one rendered source (check 2 is skipped when its findings are passed in).
    Cross-field rules skip an object the schema rejected: its fields may not have the types they reason on."""
    findings = schema.check(rendered) if schema_findings is None else list(schema_findings)
    rejected = {f.obj for f in findings}
    ctx = {
        "pinned_ray": pinned_ray(),
        "has_podmonitor": any(o.get("kind") == "PodMonitor" for o in rendered.objects),
        "image_fix_where": rendered.image_setting,
    }
    for obj in rendered.objects:
        if obj.get("kind") != "RayService":
            continue
        rs = facts(obj)
        findings += serve_config.check(rendered.source, rs)
        if rs.serve_config is not None:
            findings += import_paths.check(rendered.source, rs, ctx["pinned_ray"])
        if rs.serve_config is not None and f"RayService/{rs.name}" not in rejected:
            findings += rules.check(rendered.source, rs, ctx)
    return findings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="*", metavar="PATH",
                        help="overlay name or directory, manifest file, or - for stdin (default: every overlay)")
    parser.add_argument("--chart", help="a Helm chart directory to render and validate (with --values)")
    parser.add_argument("--values", action="append", default=[], help="values file for --chart (repeatable)")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only problems and the summary")


def _sources(args) -> list:
    """Lazily rendered sources, so one bad overlay does not stop the others."""
    if args.chart:
        from kuberay_llm.render_chart import render_chart

        return [lambda v=v: render_chart(args.chart, v) for v in (args.values or [None])]
    paths = args.paths or render.overlay_names()
    if not paths:
        raise UserError("no overlays found under overlays/ and no PATH given")
    return [lambda p=p: render.load_source(p) for p in paths]


def _render_and_schema_check(load):
    t0 = time.monotonic()
    rendered = load()
    return rendered, schema.check(rendered), time.monotonic() - t0


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    errors = warnings = checked = 0
    status = 0
    # Rendering and kubeconform are subprocesses: run them all at once while Ray's models import here.
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(_render_and_schema_check, load) for load in _sources(args)]
        serve_config.warm_up()
        results = [_result(f) for f in futures]
    for result in results:
        try:
            if isinstance(result, UserError):
                raise result
            rendered, findings, t0 = result
            t1 = time.monotonic()
            findings = check_rendered(rendered, findings)
            elapsed = t0 + time.monotonic() - t1
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            status = max(status, err.exit_code)
            continue
        checked += 1
        bad = [f for f in findings if f.severity == ERROR]
        errors += len(bad)
        warnings += len(findings) - len(bad)
        for f in findings:
            print(f"{f.severity}: {f}", file=sys.stderr if f.severity == ERROR else sys.stdout)
        if not args.quiet or bad:
            kinds = ", ".join(render.object_name(o) for o in rendered.objects)
            verdict = "INVALID" if bad else "ok"
            print(f"{verdict:7} {rendered.source} ({kinds}) in {elapsed:.1f}s")
        if bad:
            status = max(status, 1)
    print(f"validated {checked} source(s): {errors} error(s), {warnings} warning(s) "
          f"in {time.monotonic() - started:.1f}s")
    return status
