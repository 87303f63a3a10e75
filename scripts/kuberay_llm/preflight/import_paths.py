"""Check 3b: the Ray import paths a serve config names exist in the Ray the manifests deploy.

Serve imports an application's `import_path` and a deployment's `request_router_config.request_router_class`
only when it deploys them, on the cluster: a name that moved or was removed between Ray versions fails there,
after the image pull and the weight download. Here each path into `ray.` is resolved against the pinned Ray's
own source files, without importing them (importing ray.serve.llm loads vLLM): a module must exist and define
or import the name at top level.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
from pathlib import Path

from kuberay_llm.preflight.findings import ERROR, Finding
from kuberay_llm.preflight.rayservice import RayServiceFacts

# Names Ray 2.60 removed from ray.serve.llm (Ray Serve LLM went GA: the public LLMRouter alias, PDProxyServer
# and gen_config are gone from ray/serve/llm/__init__.py) and what takes their place.
REMOVED = {
    "ray.serve.llm:LLMRouter": "ray.serve.llm.ingress:OpenAiIngress (the OpenAI ingress that build_openai_app "
                               "deploys)",
    "ray.serve.llm:PDProxyServer": "ray.serve.llm:build_pd_openai_app (prefill/decode disaggregation)",
    "ray.serve.llm:gen_config": "a serve-config.yaml written by hand (`kuberay-llm plan` sizes it)",
}
# Public modules searched for a name that is not where the config says: the suggestion names where it is.
PUBLIC_MODULES = (
    "ray.serve.llm", "ray.serve.llm.ingress", "ray.serve.llm.deployment", "ray.serve.llm.request_router",
    "ray.serve.experimental.consistent_hash_router", "ray.serve.experimental.round_robin_router",
    "ray.serve.request_router",
)


def split(path: str) -> tuple[str, str]:
    """'mod.sub:Attr' or 'mod.sub.Attr' -> ('mod.sub', 'Attr'), as Serve's import_attr reads them."""
    if ":" in path:
        module, _, attr = path.partition(":")
        return module, attr
    module, _, attr = path.rpartition(".")
    return module, attr


@functools.cache
def top_level_names(module: str) -> frozenset[str] | None:
    """Names a module of the installed Ray defines or imports at top level, or None if there is no module."""
    found = _source_file(module)
    if found is None:
        return None
    origin, package_dir = found
    names: set[str] = set()
    tree = ast.parse(origin.read_text())
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                if isinstance(target, ast.Name):
                    names.add(target.id)
    if package_dir is not None:  # a package: its submodules are importable attributes too
        names.update(p.stem for p in package_dir.glob("*.py"))
        names.update(p.name for p in package_dir.iterdir() if (p / "__init__.py").is_file())
    return frozenset(names)


def _source_file(module: str) -> tuple[Path, Path | None] | None:
    """(source file, package directory or None) of a module, found on disk: find_spec of a submodule would
    import its parent packages, and ray.serve.llm's __init__ imports vLLM."""
    top, *rest = module.split(".")
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    directory = Path(next(iter(spec.submodule_search_locations)))
    for part in rest:
        directory = directory / part
    if (directory / "__init__.py").is_file():
        return directory / "__init__.py", directory
    if directory.with_suffix(".py").is_file():
        return directory.with_suffix(".py"), None
    return None


def problem(path: str) -> str | None:
    """Why the pinned Ray cannot import `path` (with the replacement where known), or None if it can."""
    module, attr = split(path)
    if not module.startswith("ray.") or not attr:
        return None
    key = f"{module}:{attr}"
    if key in REMOVED:
        return f"{attr} was removed from {module} in this Ray; use {REMOVED[key]}"
    names = top_level_names(module)
    if names is not None and attr in names:
        return None
    where = [m for m in PUBLIC_MODULES if m != module and attr in (top_level_names(m) or ())]
    missing = f"module {module} does not exist" if names is None else f"{module} has no {attr}"
    return f"{missing} in this Ray" + (f"; use {where[0]}:{attr}" if where else "")


def check(source: str, rs: RayServiceFacts, ray_version: str) -> list[Finding]:
    obj = f"RayService/{rs.name}"
    found = []
    for a, app in enumerate(rs.applications):
        if isinstance(app, dict) and isinstance(app.get("import_path"), str):
            found.append((f"serveConfigV2 applications[{a}].import_path", app["import_path"]))
    for entry in rs.llm_entries:
        deployment = entry.config.get("deployment_config")
        router = deployment.get("request_router_config") if isinstance(deployment, dict) else None
        if isinstance(router, dict) and isinstance(router.get("request_router_class"), str):
            found.append((f"{entry.path}.deployment_config.request_router_config.request_router_class",
                          router["request_router_class"]))
    out = []
    for field, path in found:
        why = problem(path)
        if why:
            fix = why.split("; use ", 1)[1] if "; use " in why else "check the name in Ray's API reference"
            out.append(Finding(ERROR, source, obj, f"{field}={path}",
                               f"{why.split('; use ', 1)[0]} {ray_version}: Serve fails when it deploys the app",
                               f"use {fix}" if "; use " in why else fix))
    return out
