"""A local loopback port forwarded to a pod port through the Kubernetes API (no kubectl binary): each
accepted connection gets its own port-forward stream, like `kubectl port-forward`."""

from __future__ import annotations

import select
import socket
import threading

from kuberay_llm.harness.errors import ConnectionFailed, Failed
from kuberay_llm.harness.kube import POD, SERVICE, ApiError, Kube, forbidden_message


def pod_behind_service(kube: Kube, service_name: str, service_port: int) -> tuple[str, int]:
    """A Ready pod selected by the Service, and the container port its `service_port` targets."""
    try:
        service = kube.get(SERVICE.path(kube.namespace, service_name))
        if service is None:
            raise Failed(f"Service {kube.namespace}/{service_name} not found: KubeRay creates it once the Serve "
                         "application is running (run `kuberay-llm wait` first)")
        selector = (service.get("spec") or {}).get("selector") or {}
        port = next((p for p in service["spec"].get("ports") or [] if p.get("port") == service_port), None)
        if not selector or port is None:
            raise Failed(f"Service {service_name} has no selector or no port {service_port}")
        label_selector = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
        pods = kube.request("GET", POD.path(kube.namespace), query=[("labelSelector", label_selector)])["items"]
    except ApiError as err:
        if err.status in (401, 403):
            raise ConnectionFailed(forbidden_message(err)) from None
        raise Failed(f"Service {service_name}: {err.message}") from None
    ready = [p for p in pods if any(c.get("type") == "Ready" and c.get("status") == "True"
                                    for c in (p.get("status") or {}).get("conditions") or [])]
    if not ready:
        raise Failed(f"no ready pod behind Service {kube.namespace}/{service_name} ({len(pods)} selected, none Ready): "
                     "see `kuberay-llm diagnose`")
    pod = ready[0]
    target = port.get("targetPort", service_port)
    if isinstance(target, str):
        named = [cp.get("containerPort") for c in pod["spec"]["containers"] for cp in c.get("ports") or []
                 if cp.get("name") == target]
        if not named:
            raise Failed(f"pod {pod['metadata']['name']} has no container port named {target!r}")
        target = named[0]
    return pod["metadata"]["name"], int(target)


class PortForward:
    """`with PortForward(kube, pod, port) as local_port:` serves 127.0.0.1:local_port until the block ends."""

    def __init__(self, kube: Kube, pod: str, port: int):
        self.kube, self.pod, self.port = kube, pod, port
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.closed = threading.Event()

    def __enter__(self) -> int:
        threading.Thread(target=self._accept, daemon=True, name="port-forward").start()
        return self.listener.getsockname()[1]

    def __exit__(self, *exc) -> None:
        self.closed.set()
        self.listener.close()

    def _open(self):
        from kubernetes import client
        from kubernetes.stream import portforward

        core = client.CoreV1Api(self.kube.api)
        return portforward(core.connect_get_namespaced_pod_portforward, self.pod, self.kube.namespace,
                           ports=str(self.port))

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._pump, args=(conn,), daemon=True).start()

    def _pump(self, conn: socket.socket) -> None:
        try:
            forward = self._open()
        except Exception:  # noqa: BLE001 - the API refused the stream: the client sees a closed connection
            conn.close()
            return
        remote = forward.socket(self.port)
        remote.setblocking(True)
        try:
            while not self.closed.is_set():
                readable, _, _ = select.select([conn, remote], [], [], 1.0)
                for source in readable:
                    data = source.recv(65536)
                    if not data:
                        return
                    (remote if source is conn else conn).sendall(data)
        except OSError:
            return
        finally:
            conn.close()
            forward.close()
