"""`kuberay-llm delete NAME`: delete a RayService; KubeRay's owner references take its clusters and pods."""

from __future__ import annotations

import argparse

from kuberay_llm import settings
from kuberay_llm.harness.errors import ConnectionFailed, Failed, TimedOut
from kuberay_llm.harness.kube import RAYSERVICE, ApiError, Kube, Unreachable, forbidden_message


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="RayService name")
    parser.add_argument("-n", "--namespace", help="namespace (default: the kube context's)")
    parser.add_argument("--wait", action="store_true", help="return once the RayService is gone")
    parser.add_argument("--ignore-not-found", action="store_true", help="exit 0 if it does not exist")


def delete(kube: Kube, name: str, *, wait: bool = False, ignore_not_found: bool = False) -> str:
    path = RAYSERVICE.path(kube.namespace, name)
    where = f"RayService {kube.namespace}/{name}"
    try:
        kube.request("DELETE", path, body={"apiVersion": "v1", "kind": "DeleteOptions",
                                           "propagationPolicy": "Background"})
    except ApiError as err:
        if err.status == 404:
            if ignore_not_found:
                return f"{where} not found (nothing to delete)"
            raise Failed(f"{where} not found") from None
        if err.status in (401, 403):
            raise ConnectionFailed(forbidden_message(err)) from None
        raise Failed(f"{where}: {err.message}") from None
    except Unreachable as exc:
        raise ConnectionFailed(str(exc)) from None
    if wait:
        timeout = settings.delete_timeout()
        listing = kube.request("GET", RAYSERVICE.path(kube.namespace), query=[("fieldSelector", f"metadata.name={name}")])
        if listing["items"]:
            import time
            deadline = time.monotonic() + timeout
            version = listing["metadata"]["resourceVersion"]
            gone = False
            while not gone and time.monotonic() < deadline:
                for event in kube.watch(RAYSERVICE.path(kube.namespace), [("fieldSelector", f"metadata.name={name}")],
                                        version):
                    version = event["object"]["metadata"].get("resourceVersion", version)
                    if event["type"] == "DELETED":
                        gone = True
                        break
            if not gone:
                raise TimedOut(f"{where} still exists after {timeout:.0f}s (finalizers? see kuberay-llm diagnose)")
    return f"{where} deleted"


def run(args: argparse.Namespace) -> int:
    kube = Kube.connect(args.namespace)
    kube.check_reachable()
    print(delete(kube, args.name, wait=args.wait, ignore_not_found=args.ignore_not_found))
    return 0
