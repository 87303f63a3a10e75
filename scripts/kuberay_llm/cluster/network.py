"""The local cluster's pod network: one Linux bridge on this machine and one network namespace per pod.

Each pod that runs for real gets a named network namespace with one veth end (`eth0`, the pod IP) plugged
into the cluster's bridge; the bridge holds the host's address in the same /16, so the API server (pod and
service proxy), kwok's port-forward and the tests reach pod IPs directly, and pods reach each other.
Namespaces get no default route and a resolv.conf pointing at their own loopback: nothing a pod does can
leave this machine, not even a DNS query (Ray's usage stats, Hugging Face lookups fail at once instead).

Needs root (CAP_NET_ADMIN for the bridge and veths, CAP_SYS_ADMIN for the namespaces) and iproute2.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess

from kuberay_llm import settings
from kuberay_llm.errors import UserError

# Candidate pod networks, tried in order; the first that no route of this machine overlaps is taken.
# KUBERAY_LLM_CLUSTER_POD_CIDR forces one.
CANDIDATE_CIDRS = [f"10.{second}.0.0/16" for second in range(244, 255)]
TOOLS = ("ip", "unshare", "nsenter", "mount")


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise UserError(f"{what} needs root: it creates a network namespace and a veth pair per pod, a bridge, "
                        "and mount/PID namespaces for each container (CAP_NET_ADMIN and CAP_SYS_ADMIN). "
                        "Run it as root (e.g. `sudo make cluster`)")
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        raise UserError(f"{what} needs {', '.join(missing)} on PATH (packages iproute2 and util-linux)")


def ip(*args: str, check: bool = True, netns: str | None = None) -> subprocess.CompletedProcess:
    cmd = ["ip", *(["-n", netns] if netns else []), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    if check and proc.returncode != 0:
        raise UserError(f"`{' '.join(cmd)}` failed: {proc.stderr.strip()}")
    return proc


def routed_networks() -> list[ipaddress.IPv4Network]:
    routes = json.loads(ip("-j", "-4", "route", "show", "table", "all").stdout or "[]")
    networks = []
    for route in routes:
        dst = route.get("dst", "")
        if dst in ("default", "") or route.get("type") in ("broadcast", "local"):
            continue
        try:
            networks.append(ipaddress.ip_network(dst if "/" in dst else f"{dst}/32", strict=False))
        except ValueError:
            continue
    return networks


def pick_pod_cidr() -> ipaddress.IPv4Network:
    forced = settings.cluster_pod_cidr()
    routed = routed_networks()
    for network in [forced] if forced else map(ipaddress.ip_network, CANDIDATE_CIDRS):
        clash = next((r for r in routed if r.overlaps(network)), None)
        if clash is None:
            return network
        if forced:
            raise UserError(f"KUBERAY_LLM_CLUSTER_POD_CIDR={network} overlaps the route {clash} of this machine")
    raise UserError(f"every candidate pod network ({CANDIDATE_CIDRS[0]} … {CANDIDATE_CIDRS[-1]}) overlaps a route "
                    "of this machine: set KUBERAY_LLM_CLUSTER_POD_CIDR to a free /16")


def create_bridge(name: str, network: ipaddress.IPv4Network) -> str:
    """The bridge with the host's address (the network's first) on it; returns that address."""
    host = str(next(network.hosts()))
    ip("link", "add", name, "type", "bridge")
    ip("addr", "add", f"{host}/{network.prefixlen}", "dev", name)
    ip("link", "set", name, "up")
    return host


def delete_bridge(name: str) -> None:
    ip("link", "del", name, check=False)


def add_unreachable(network: str) -> None:
    """Addresses nothing answers on (kwok's simulated pods): connecting fails at once instead of waiting out ARP,
    so the API server's proxy and the operator's Serve calls to a simulated pod do not stall."""
    ip("route", "add", "unreachable", network)


def delete_unreachable(network: str) -> None:
    ip("route", "del", "unreachable", network, check=False)


def add_pod_netns(netns: str, bridge: str, address: str, prefixlen: int) -> None:
    """Namespace `netns` with lo up and eth0 = `address`, its peer plugged into `bridge`. No default route."""
    host_end = "v" + netns[-14:]  # interface names are at most 15 characters
    ip("netns", "add", netns)
    try:
        ip("link", "add", host_end, "type", "veth", "peer", "name", "eth0", "netns", netns)
        ip("link", "set", host_end, "master", bridge, "up")
        ip("link", "set", "lo", "up", netns=netns)
        ip("addr", "add", f"{address}/{prefixlen}", "dev", "eth0", netns=netns)
        ip("link", "set", "eth0", "up", netns=netns)
    except UserError:
        delete_pod_netns(netns)
        raise


def netns_pids(netns: str) -> list[int]:
    proc = ip("netns", "pids", netns, check=False)
    return [int(p) for p in proc.stdout.split()] if proc.returncode == 0 else []


def delete_pod_netns(netns: str) -> None:
    """Remove the namespace (its veth pair goes with it). Processes still inside are the caller's to stop."""
    ip("netns", "del", netns, check=False)


def list_netns(prefix: str) -> list[str]:
    proc = ip("-j", "netns", "list", check=False)
    names = [n.get("name", "") for n in json.loads(proc.stdout or "[]")] if proc.returncode == 0 else []
    return [n for n in names if n.startswith(prefix)]
