"""The harness survives the API server going away, and works with exactly the Role of deploy/rbac."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import uuid

import pytest
import yaml

from cpkit import (REPO, create_pod, create_rayservice, finish, run_cli, serving_status, start_cli, wait_for_line,
                   write_status)
from kuberay_llm import toolchain
from kuberay_llm.harness.apply import apply_objects

pytestmark = pytest.mark.timeout(240)  # a hung watch fails its test, not the whole run


def test_wait_reconnects_after_an_api_server_restart(controlplane, kube):
    name = "restart"
    create_rayservice(kube, name)
    proc = start_cli(["wait", name, "-n", kube.namespace, "--timeout", "90s"], controlplane.kubeconfig)
    wait_for_line(proc, "] ")
    controlplane.stop_apiserver()
    wait_for_line(proc, "lost the API server")
    controlplane.start_apiserver()
    wait_for_line(proc, "reconnected after")
    write_status(kube, name, serving_status(f"{name}-abcde"))
    code, out, err = finish(proc)
    assert code == 0, err
    assert "is healthy" in out


def test_missing_binaries_name_the_make_target(tmp_path):
    result = subprocess.run([sys.executable, "-c", "from localcluster import LocalControlPlane as P; P().start()"],
                            cwd=REPO / "tests/controlplane", capture_output=True, text=True, timeout=120, check=False,
                            env={**os.environ, "KUBERAY_LLM_BIN": str(tmp_path)})
    assert result.returncode != 0
    assert "is missing: run `make controlplane`" in result.stderr


@pytest.fixture(scope="module")
def rbac_users(controlplane):
    """Users `deployer` (in the group the RoleBinding names) and `stranger`; restarts the API server once to
    load their static tokens."""
    _, deployer = controlplane.add_token_user("deployer", "kuberay-llm-deployers")
    _, stranger = controlplane.add_token_user("stranger")
    controlplane.restart_apiserver()
    return deployer, stranger


@pytest.fixture
def bound_namespace(controlplane, namespace):
    rendered = toolchain.run_tool([toolchain.tool("kustomize"), "build", REPO / "deploy/rbac"], what="deploy/rbac")
    apply_objects(controlplane.kube(namespace), list(yaml.safe_load_all(rendered)), source="deploy/rbac",
                  out=io.StringIO())
    return namespace


def test_the_namespaced_role_is_enough_for_every_command(controlplane, rbac_users, bound_namespace):
    deployer, _ = rbac_users
    ns = bound_namespace
    applied = run_cli(["apply", "small", "-n", ns], deployer)
    assert applied.returncode == 0, applied.stderr
    admin = controlplane.kube(ns)
    create_pod(admin, "llama-8b-abcde", "llama-8b-abcde-head", group="headgroup", node_type="head")
    waited = run_cli(["wait", "llama-8b", "-n", ns, "--timeout", "3s"], deployer)
    assert waited.returncode == 4, waited.stderr
    assert "not scheduled yet" in waited.stderr and "forbidden" not in waited.stderr
    status = run_cli(["status", "llama-8b", "-n", ns], deployer)
    assert status.returncode == 4, status.stderr
    diagnose = run_cli(["diagnose", "llama-8b", "-n", ns], deployer)
    assert diagnose.returncode == 4 and "forbidden" not in diagnose.stdout + diagnose.stderr, diagnose.stderr
    deleted = run_cli(["delete", "llama-8b", "-n", ns, "--wait"], deployer)
    assert deleted.returncode == 0, deleted.stderr


def test_without_the_binding_commands_stop_with_a_clear_message(controlplane, rbac_users, bound_namespace):
    deployer, stranger = rbac_users
    for kubeconfig, namespace in ((stranger, bound_namespace), (deployer, f"unbound-{uuid.uuid4().hex[:6]}")):
        applied = run_cli(["apply", "small", "-n", namespace], kubeconfig)
        assert applied.returncode == 3, applied.stdout + applied.stderr
        assert "forbidden" in applied.stderr and "deploy/rbac" in applied.stderr
        assert "Traceback" not in applied.stderr and len(applied.stderr.strip().splitlines()) == 1
        waited = run_cli(["wait", "llama-8b", "-n", namespace, "--timeout", "5s"], kubeconfig)
        assert waited.returncode == 3 and "forbidden" in waited.stderr and "deploy/rbac" in waited.stderr


def test_make_e2e_against_the_local_control_plane(controlplane, namespace):
    """apply -> wait sees pods not scheduled yet (the real operator made them; no scheduler) -> exit 2 ->
    diagnose -> teardown."""
    controlplane.start_operator(namespace=namespace)
    try:
        result = subprocess.run(
            ["make", "--no-print-directory", "e2e", "OVERLAY=small", f"NAMESPACE={namespace}", "E2E_WAIT_TIMEOUT=8s"],
            cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
            env={**__import__("os").environ, "KUBECONFIG": str(controlplane.kubeconfig)})
    finally:
        controlplane.stop_operator()
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "rayservice/llama-8b" in output and "created" in output
    assert "not scheduled yet" in output
    assert "timed out after" in output
    assert f"RayService {namespace}/llama-8b deleted" in output
    assert controlplane.kube(namespace).get(f"/apis/ray.io/v1/namespaces/{namespace}/rayservices/llama-8b") is None
