"""Check 4g: where Serve listens, and where KubeRay looks for it, agree.

Ray Serve listens on serveConfigV2 `http_options` (Ray 2.60.0 python/ray/serve/schema.py HTTPOptionsSchema:
host "0.0.0.0", port 8000). KubeRay v1.6.2 does not read that: it finds Serve at the Ray container's port named
`serve` (utils.FindContainerPort(container, "serve", 8000); ServingPortName / DefaultServingPort in
utils/constant.go):
- the head's is where the operator checks the proxy's health and what `<name>-serve-svc` targets
  (rayservice_controller.go updateHeadPodServeLabel, common/service.go BuildServeService);
- each worker's is where the readiness probe KubeRay adds to RayService workers asks Serve's proxy
  (common/pod.go initLivenessAndReadinessProbe: wget .../-/healthz on that port, unless the container brings its
  own readinessProbe); a worker that fails it is never Ready and never receives traffic;
- a head container that declares ports but none named `serve` or `serve-*`, without spec.serveService, gets no
  serve Service at all (BuildServeService: "Please specify a port named 'serve' ...", getServicePorts takes the
  defaults only when the container declares no port).
A custom spec.serveService whose serve port targets another port sends traffic where nothing listens.
"""

from __future__ import annotations

from kuberay_llm.preflight.findings import ERROR, Finding
from kuberay_llm.preflight.rayservice import RayGroup, RayServiceFacts, items, mapping

DEFAULT_SERVE_PORT = 8000  # KubeRay utils.DefaultServingPort and Ray's HTTPOptionsSchema.port
ALL_INTERFACES = ("0.0.0.0", "::", "")


def _is_serving(name) -> bool:
    return isinstance(name, str) and (name == "serve" or name.startswith("serve-"))


def _serve_port(group: RayGroup) -> tuple[int, str | None]:
    """(the port KubeRay uses for Serve on this group's pods, the field that sets it or None for the default)."""
    container = group.containers[0] if group.containers else {}
    for i, port in enumerate(items(container.get("ports"))):
        if isinstance(port, dict) and port.get("name") == "serve" and isinstance(port.get("containerPort"), int):
            return port["containerPort"], f"{group.path}.template.spec.containers[0].ports[{i}].containerPort"
    return DEFAULT_SERVE_PORT, None


def rule_serve_ports_agree(source, rs: RayServiceFacts, ctx) -> list[Finding]:
    obj, out = f"RayService/{rs.name}", []
    http = mapping((rs.serve_config or {}).get("http_options"))
    listens = http.get("port", DEFAULT_SERVE_PORT)
    if not isinstance(listens, int) or isinstance(listens, bool):
        return []  # Ray's schema classes report the type
    where = "serveConfigV2 http_options.port" + (f"={listens}" if "port" in http else " (unset: 8000)")
    host = http.get("host")
    if isinstance(host, str) and host not in ALL_INTERFACES:
        out.append(Finding(ERROR, source, obj, f"serveConfigV2 http_options.host={host}",
                           f"Serve's proxies listen on {host} only: {rs.name}-serve-svc, KubeRay's health checks and "
                           "the workers' readiness probes cannot reach them",
                           "remove host (Serve listens on all interfaces, 0.0.0.0)"))
    for group in rs.groups:
        port, field = _serve_port(group)
        head = group.path.endswith("headGroupSpec")
        own_probe = bool(group.containers and group.containers[0].get("readinessProbe"))
        if port == listens or (not head and own_probe):
            continue
        what = (f"the operator checks the proxy's health and {rs.name}-serve-svc sends traffic to port {port}"
                if head else f"the readiness probe KubeRay gives worker group {group.name} asks port {port}, so its "
                "pods never become Ready and never get traffic")
        fix = (f"set the head container's port named serve to containerPort {listens}" if head
               else f"declare containerPort {listens} named `serve` on the worker's Ray container")
        where_kuberay = f"{field}={port}" if field else f"{group.path}.template.spec.containers[0].ports"
        out.append(Finding(ERROR, source, obj, where_kuberay,
                           f"Serve listens on {listens} ({where}), but KubeRay finds Serve at the Ray container's "
                           f"port named serve{'' if field else ' (none declared: 8000)'}: {what}",
                           f"{fix}, or set http_options.port: {port}"))
    head_ports = [p for p in items((rs.head.containers[0] if rs.head and rs.head.containers else {}).get("ports"))
                  if isinstance(p, dict)]
    serve_service = rs.spec.get("serveService")
    if rs.head and head_ports and not any(_is_serving(p.get("name")) for p in head_ports) and serve_service is None:
        out.append(Finding(ERROR, source, obj, f"{rs.head.path}.template.spec.containers[0].ports",
                           "declares no port named 'serve' (or with the prefix 'serve-'): KubeRay creates no "
                           f"Kubernetes service for Ray Serve ({rs.name}-serve-svc)",
                           f"add {{name: serve, containerPort: {listens}}} to the head container's ports"))
    for i, port in enumerate(items(mapping(mapping(serve_service).get("spec")).get("ports"))):
        if not isinstance(port, dict) or not _is_serving(port.get("name")) or port.get("name") != "serve":
            continue
        target = port.get("targetPort", port.get("port"))
        if isinstance(target, int) and not isinstance(target, bool) and target != listens:
            out.append(Finding(ERROR, source, obj, f"spec.serveService.spec.ports[{i}].targetPort={target}",
                               f"sends the serve Service's traffic to port {target}, but Serve listens on {listens} "
                               f"({where})", f"set targetPort: {listens} (or targetPort: serve)"))
    return out


RULES = [rule_serve_ports_agree]
