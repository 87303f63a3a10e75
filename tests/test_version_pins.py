"""Each upstream version is pinned once; the copies that must exist elsewhere (a chart's appVersion, an Argo
CD targetRevision, a command in the README) are checked here against the one pin, so they cannot drift.

Ray: pyproject.toml's `ray[serve]==X` (the Ray preflight validates with). KubeRay: the Makefile's KUBERAY_VERSION.
"""

from __future__ import annotations

import re

import yaml

from overlay_helpers import REPO
from kuberay_llm import toolchain


def pinned_ray() -> str:
    return re.search(r'"ray\[serve\]==([\d.]+)"', (REPO / "pyproject.toml").read_text()).group(1)


def pinned_kuberay() -> str:
    return toolchain.pins()["KUBERAY_VERSION"].lstrip("v")


def ray_of(tag: str) -> str:
    return tag.split("@", 1)[0].split("-", 1)[0]


def test_every_ray_image_tag_and_the_chart_app_version_follow_the_ray_pin():
    ray = pinned_ray()
    found = {}
    for kustomization in [REPO / "manifests/base/kustomization.yaml", *sorted(REPO.glob("overlays/*/kustomization.yaml"))]:
        for image in yaml.safe_load(kustomization.read_text()).get("images") or []:
            if "newTag" in image:
                found[f"{kustomization.relative_to(REPO)} images {image['name']}"] = ray_of(image["newTag"])
    for values in [REPO / "charts/ray-llm/values.yaml", *sorted(REPO.glob("charts/ray-llm/ci/*-values.yaml"))]:
        tag = ((yaml.safe_load(values.read_text()) or {}).get("image") or {}).get("tag")
        if tag:
            found[f"{values.relative_to(REPO)} image.tag"] = ray_of(tag)
    found["charts/ray-llm/Chart.yaml appVersion"] = yaml.safe_load((REPO / "charts/ray-llm/Chart.yaml").read_text())[
        "appVersion"]
    drifted = {where: v for where, v in found.items() if v != ray}
    assert len(found) >= 4 and not drifted, f"pyproject.toml pins Ray {ray}; these say otherwise: {drifted}"


def test_every_kuberay_version_follows_the_makefile_pin():
    kuberay = pinned_kuberay()
    found = {"argocd/kuberay-operator.yaml targetRevision":
             yaml.safe_load((REPO / "argocd/kuberay-operator.yaml").read_text())["spec"]["source"]["targetRevision"],
             "charts/ray-llm/Chart.yaml annotations.kuberay-operator-version":
             yaml.safe_load((REPO / "charts/ray-llm/Chart.yaml").read_text())["annotations"]["kuberay-operator-version"]}
    for doc in ("README.md", "charts/ray-llm/README.md.gotmpl", "charts/ray-llm/README.md"):
        text = (REPO / doc).read_text()
        for i, version in enumerate(re.findall(r"kuberay-operator(?:\s+kuberay/kuberay-operator)?\s+--version\s+(\S+)"
                                               r"|chart `kuberay-operator` (\S+)", text)):
            found[f"{doc} mention {i + 1}"] = next(v for v in version if v)
    drifted = {where: v for where, v in found.items() if v != kuberay}
    assert len(found) >= 4 and not drifted, f"the Makefile pins KubeRay {kuberay}; these say otherwise: {drifted}"
