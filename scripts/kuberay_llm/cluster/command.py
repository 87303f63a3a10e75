"""`kuberay-llm cluster up|down|status`: the local cluster for users (`make cluster`, `make cluster-down`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from kuberay_llm.cluster.controlplane import Cluster, default_dir
from kuberay_llm.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("up", "down", "status", "tiny-overlay"),
                        help="up: start (idempotent); down: stop every process by PID; status: is it running; "
                             "tiny-overlay OVERLAY: print the directory of OVERLAY with the offline tiny model")
    parser.add_argument("overlay", nargs="?", help="for tiny-overlay: the overlay name or directory")
    parser.add_argument("--dir", type=Path, default=None,
                        help=f"state, logs and kubeconfig (default: {default_dir()})")


def run(args: argparse.Namespace) -> int:
    if args.action == "tiny-overlay":
        from kuberay_llm.cluster.tiny_overlay import tiny_overlay

        if not args.overlay:
            raise UserError("tiny-overlay needs an overlay: kuberay-llm cluster tiny-overlay local-cpu")
        print(tiny_overlay(args.overlay))
        return 0
    cluster = Cluster(args.dir)
    if args.action == "up":
        cluster.up()
        print(f"kubeconfig: {cluster.kubeconfig}\n"
              f"  export KUBECONFIG={cluster.kubeconfig}\n"
              f"  kuberay-llm apply local-cpu && kuberay-llm wait local-cpu-llm && kuberay-llm smoke local-cpu-llm\n"
              f"  kubectl get nodes,pods -A\n"
              f"stop it: make cluster-down (kuberay-llm cluster down)")
        return 0
    if args.action == "down":
        cluster.down()
        return 0
    if cluster.running():
        print(f"running: API server {cluster.server}, kubeconfig {cluster.kubeconfig}, logs in {cluster.dir}")
        return 0
    print(f"not running ({cluster.dir})")
    return 1
