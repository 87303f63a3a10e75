"""Session fixture: a real etcd + kube-apiserver on loopback with the pinned KubeRay CRDs (localcluster.py).

Every test here is marked `controlplane` and runs in the default `make test`, which builds the binaries
first (`make controlplane`). Without them the tests fail, naming the make target; they never skip.
"""

from __future__ import annotations

import uuid

import pytest

from localcluster import LocalControlPlane


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/controlplane/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.controlplane)


@pytest.fixture(scope="session")
def controlplane():
    try:
        plane = LocalControlPlane().start()
    except RuntimeError as err:
        pytest.fail(f"local control plane did not start: {err}", pytrace=False)
    yield plane
    plane.stop()


@pytest.fixture
def namespace(controlplane) -> str:
    """A fresh namespace per test (no namespace controller runs, so it is simply left behind)."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    controlplane.kube().request("POST", "/api/v1/namespaces", body={"apiVersion": "v1", "kind": "Namespace",
                                                                    "metadata": {"name": name}})
    return name


@pytest.fixture
def kube(controlplane, namespace):
    return controlplane.kube(namespace)
