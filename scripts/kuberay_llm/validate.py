"""`kuberay-llm validate`: offline preflight of overlays and manifest files.

1. render (pinned kustomize or helm; plain files and stdin are read as they are);
2. every object against the Kubernetes and KubeRay schemas, strictly (preflight/schema.py), in one
   kubeconform run for all sources; then what those schemas lose (preflight/structure.py): exact-case kinds,
   metadata.name, integers within their int32/int64 format;
3. every serveConfigV2 against Ray's own schema classes and the typed serve-config model
   (preflight/serve_config.py, kuberay_llm/serveconfig.py);
4. cross-field rules (preflight/rules.py, with what KubeRay and the API server would refuse later:
   preflight/kuberay_rules.py and pod_rules.py; model facts; capacity), each only on parts that passed 2 and 3.

Fails closed: a source that makes a check raise anything but a UserError ends as "internal error" with exit 2
(and counts in `internal_errors`), never as a traceback or a pass.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import sys
import time
from dataclasses import dataclass, field

from kuberay_llm import render
from kuberay_llm.errors import UserError
from kuberay_llm.preflight import import_paths, rules, schema, serve_config, structure
from kuberay_llm.preflight.findings import ERROR, Finding
from kuberay_llm.preflight.rayservice import facts

EXIT_VALID = 0
EXIT_INVALID = 1
EXIT_USAGE = UserError.exit_code  # usage or tool error: the same code every command uses

# Guard hits in this process (the fuzz run counts them as failures).
internal_errors = 0


@dataclass
class Outcome:
    """The verdict on one source: what `run` prints, and its exit code."""

    source: str
    exit_code: int
    findings: list[Finding] = field(default_factory=list)
    error: str = ""  # a UserError's or the guard's one-line message
    kinds: str = ""
    seconds: float = 0.0

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == ERROR]


def pinned_ray() -> str:
    import importlib.metadata

    return importlib.metadata.version("ray")


def source_kind(rendered: render.Rendered) -> str:
    """"overlay", "chart" or "file" (a manifest file or stdin), by where its loader says the image is set (an
    overlay keeps Rendered's default, a file or stdin says "the image field", a chart names its values)."""
    if rendered.image_setting == render.Rendered.image_setting:
        return "overlay"
    return "file" if rendered.image_setting == "the image field" else "chart"


def check_rendered(rendered: render.Rendered, schema_findings: list[Finding] | None = None) -> list[Finding]:
    """Checks 2 to 4 of one rendered source (check 2 is skipped when its findings are passed in)."""
    findings = schema.check(rendered) if schema_findings is None else list(schema_findings)
    if rendered.objects:
        findings += structure.check(rendered.source, rendered.objects)
    if not rendered.objects:
        return findings + [Finding(ERROR, rendered.source, "(none)", "(document)", "contains no Kubernetes object",
                                   "give a manifest with at least one object, or an overlay directory")]
    rejected = {f.obj for f in findings if f.severity == ERROR}
    # A schema finding on a RayService whose name cannot be read (metadata not a mapping, no name) cannot be
    # matched to its object: then no RayService of this source counts as accepted.
    known = {f"RayService/{facts(o).name}" for o in rendered.objects if o.get("kind") == "RayService"}
    unmatched = any(f.obj.startswith("RayService/") and f.obj not in known for f in findings)
    ctx = {
        "pinned_ray": pinned_ray(),
        "has_podmonitor": any(o.get("kind") == "PodMonitor" for o in rendered.objects),
        "objects": rendered.objects,  # source-level rules (preflight/hardening.py)
        "image_fix_where": rendered.image_setting,
        "source_kind": source_kind(rendered),  # where a fix is made: an overlay, a chart's values or the file
    }
    for obj in rendered.objects:
        if obj.get("kind") != "RayService":
            continue
        rs = facts(obj)
        name = f"RayService/{rs.name}"
        serve_findings = serve_config.check(rendered.source, rs)
        if rs.serve is not None:
            serve_findings += import_paths.check(rendered.source, rs, ctx["pinned_ray"])
            serve_findings += serve_config.not_checked(rendered.source, rs)
        findings += serve_findings
        passed = set()
        if name not in rejected and not unmatched and rs.name != "?":
            passed.add(rules.CLUSTER)
        if rs.serve is not None and not any(f.severity == ERROR for f in serve_findings):
            passed.add(rules.SERVE)
        findings += rules.check(rendered.source, rs, ctx, passed)
    return findings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="*", metavar="PATH",
                        help="overlay name or directory, manifest file, or - for stdin (default: every overlay)")
    parser.add_argument("--chart", help="a Helm chart directory to render and validate (with --values)")
    parser.add_argument("--values", action="append", default=[], help="values file for --chart (repeatable)")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only problems and the summary")


def _sources(args) -> list[tuple[str, object]]:
    """(name, loader) of each source, rendered lazily so one bad overlay does not stop the others."""
    if args.values and not args.chart:
        raise UserError("--values needs --chart (e.g. --chart charts/ray-llm --values charts/ray-llm/ci/small-values.yaml)")
    if args.chart:
        if args.paths:
            raise UserError("give PATHs or --chart, not both")
        from kuberay_llm.render_chart import render_chart

        return [(f"{args.chart} ({v})" if v else args.chart, lambda v=v: render_chart(args.chart, v))
                for v in (args.values or [None])]
    paths = args.paths or render.overlay_names()
    if not paths:
        raise UserError("no overlays found under overlays/ and no PATH given")
    if paths.count("-") > 1:
        raise UserError("stdin (-) can be given once")
    return [(p, lambda p=p: render.load_source(p)) for p in paths]


def _internal(source: str, exc: BaseException) -> Outcome:
    global internal_errors
    internal_errors += 1
    detail = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
    return Outcome(source, EXIT_USAGE, error=f"{source}: internal error while validating ({detail}); please report "
                                              "it with the input that caused it")


def _load(name: str, load) -> tuple[render.Rendered | None, Outcome | None]:
    try:
        return load(), None
    except UserError as err:
        return None, Outcome(name, err.exit_code, error=str(err))
    except Exception as exc:  # noqa: BLE001 - the one guard: anything unexpected is exit 2, not a traceback
        return None, _internal(name, exc)


def validate_sources(sources: list[tuple[str, object]], warm=None) -> list[Outcome]:
    """Render, schema-check (one kubeconform run) and check every source; one Outcome each, in order."""
    started = time.monotonic()
    # Rendering is a subprocess per source: run them at once while Ray's models import here.
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(_load, name, load) for name, load in sources]
        if warm:
            warm()
        loaded = [f.result() for f in futures]
    rendered = [r for r, failed in loaded if r is not None]
    try:
        schema_findings = schema.check_many(rendered) if rendered else []
    except UserError as err:  # kubeconform itself failed: every source fails the same way
        return [failed or Outcome(r.source, err.exit_code, error=str(err)) for r, failed in loaded]
    render_seconds = (time.monotonic() - started) / max(1, len(sources))
    out, index = [], 0
    for r, failed in loaded:
        if failed is not None:
            out.append(failed)
            continue
        found = schema_findings[index]
        index += 1
        t0 = time.monotonic()
        try:
            findings = check_rendered(r, found)
        except UserError as err:
            out.append(Outcome(r.source, err.exit_code, error=str(err)))
            continue
        except Exception as exc:  # noqa: BLE001 - the one guard (see _internal)
            out.append(_internal(r.source, exc))
            continue
        bad = any(f.severity == ERROR for f in findings)
        kinds = ", ".join(render.object_name(o) for o in r.objects) or "no objects"
        out.append(Outcome(r.source, EXIT_INVALID if bad else EXIT_VALID, findings, kinds=kinds,
                           seconds=render_seconds + time.monotonic() - t0))
    return out


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    outcomes = validate_sources(_sources(args), warm=serve_config.warm_up)
    errors = warnings = checked = 0
    status = EXIT_VALID
    for o in outcomes:
        status = max(status, o.exit_code)
        if o.error:
            print(f"error: {o.error}", file=sys.stderr)
            continue
        checked += 1
        bad = o.errors
        errors += len(bad)
        warnings += len(o.findings) - len(bad)
        for f in o.findings:
            print(f"{f.severity}: {f}", file=sys.stderr if f.severity == ERROR else sys.stdout)
        if not args.quiet or bad:
            verdict = "INVALID" if bad else "ok"
            print(f"{verdict:7} {o.source} ({o.kinds}) in {o.seconds:.1f}s")
    print(f"validated {checked} source(s): {errors} error(s), {warnings} warning(s) "
          f"in {time.monotonic() - started:.1f}s")
    return status
