"""A small HTTP layer over the official `kubernetes` client: its kubeconfig/in-cluster loading, TLS and
auth, with plain dicts in and out, list+watch informers and one-line errors.

Plain dicts keep the RayService (a custom resource) and core objects in the same shape as `kubectl get -o
json`, and raw requests give server-side apply (`application/apply-patch+yaml`) and watch bookmarks
without the generated models in between.
"""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import threading
import time
from collections.abc import Iterator
from urllib.parse import quote

import urllib3

from kuberay_llm import exitcodes
from kuberay_llm.errors import UserError
from kuberay_llm.harness import settings
from kuberay_llm.harness.errors import ConnectionFailed

RBAC_HINT = "grant the harness Role of deploy/rbac/ in this namespace (see deploy/rbac/README.md)"


class ApiError(UserError):
    """A non-2xx answer of the API server, with the server's own message. Uncaught, the CLI prints it as one
    line: exit 3 (unavailable) for missing rights (with the RBAC hint), 1 otherwise."""

    def __init__(self, status: int, reason: str, message: str):
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message
        self.exit_code = exitcodes.UNAVAILABLE if status in (401, 403) else exitcodes.FAILED

    def __str__(self) -> str:
        return forbidden_message(self) if self.status == 403 else self.message


class Gone(ApiError):
    """410: the resourceVersion a watch resumed from is compacted away; relist."""


class Unreachable(UserError):
    """The API server did not answer (down, restarting, network)."""

    exit_code = exitcodes.UNAVAILABLE


@dataclasses.dataclass(frozen=True)
class Resource:
    api_version: str
    kind: str
    plural: str
    namespaced: bool

    def path(self, namespace: str | None, name: str | None = None) -> str:
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        if self.namespaced:
            base += f"/namespaces/{quote(namespace or 'default', safe='')}"
        base += f"/{self.plural}"
        return base + (f"/{quote(name, safe='')}" if name else "")


RAYSERVICE = Resource("ray.io/v1", "RayService", "rayservices", True)
RAYCLUSTER = Resource("ray.io/v1", "RayCluster", "rayclusters", True)
POD = Resource("v1", "Pod", "pods", True)
EVENT = Resource("v1", "Event", "events", True)
SERVICE = Resource("v1", "Service", "services", True)


def forbidden_message(err: ApiError) -> str:
    return f"{err.message}: {RBAC_HINT}"


class Kube:
    """One connection to the cluster of the current kube context (or the pod's service account)."""

    def __init__(self, api_client, namespace: str, context: str):
        self.api = api_client
        self.namespace = namespace
        self.context = context
        self._discovery: dict[str, dict[str, Resource] | None] = {}
        self.explicit_namespace = False  # set when the user passed --namespace

    @classmethod
    def connect(cls, namespace: str | None = None) -> Kube:
        """Load the kubeconfig (KUBECONFIG, ~/.kube/config) or, inside a pod, the in-cluster config."""
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException

        configuration = client.Configuration()
        context_namespace, context_name = "default", "in-cluster"
        try:
            # KUBECONFIG read now: the client reads it once, when kubernetes.config is first imported
            kubeconfig = os.environ.get("KUBECONFIG") or None
            config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
            _, active = config.list_kube_config_contexts(config_file=kubeconfig)
            context_name = active.get("name", "?")
            context_namespace = (active.get("context") or {}).get("namespace") or "default"
        except (ConfigException, OSError, TypeError) as kubeconfig_error:
            try:
                config.load_incluster_config(client_configuration=configuration)
                with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as handle:
                    context_namespace = handle.read().strip()
            except (ConfigException, OSError):
                raise ConnectionFailed(
                    f"no cluster: cannot load a kubeconfig ({kubeconfig_error}) and not running in a pod; "
                    "set KUBECONFIG or `kubectl config use-context` to the cluster") from None
        configuration.retries = False
        return cls(client.ApiClient(configuration), namespace or context_namespace, context_name)

    @property
    def host(self) -> str:
        return self.api.configuration.host

    # -- raw requests -------------------------------------------------------------------------------

    def _send(self, method: str, path: str, *, query: list[tuple[str, str]] | None = None,
              body: dict | None = None, content_type: str | None = None, timeout=None):
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        method, url, headers, body, post = self.api.param_serialize(
            method, path, query_params=query or [], header_params=headers, body=body,
            auth_settings=["BearerToken"])
        try:
            return self.api.call_api(method, url, headers, body, post,
                                     _request_timeout=timeout or settings.request_timeout())
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise Unreachable(f"API server {self.host} unreachable: {_short(exc)}") from None

    def request(self, method: str, path: str, *, query: list[tuple[str, str]] | None = None,
                body: dict | None = None, content_type: str = "application/json", timeout=None) -> dict:
        # the client's REST layer serializes a dict body as JSON (also for the +yaml apply patch: JSON is YAML)
        response = self._send(method, path, query=query, body=body,
                              content_type=content_type if body is not None else None, timeout=timeout)
        try:
            data = response.read()
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise Unreachable(f"API server {self.host} unreachable: {_short(exc)}") from None
        if response.status >= 400:
            raise _api_error(response.status, data)
        return json.loads(data) if data else {}

    def get(self, path: str) -> dict | None:
        """The object at `path`, or None if it does not exist."""
        try:
            return self.request("GET", path)
        except ApiError as err:
            if err.status == 404:
                return None
            raise

    def text(self, path: str, query: list[tuple[str, str]]) -> str:
        response = self._send("GET", path, query=query)
        data = response.read()
        if response.status >= 400:
            raise _api_error(response.status, data)
        return data.decode("utf-8", errors="replace")

    def watch(self, path: str, query: list[tuple[str, str]], resource_version: str) -> Iterator[dict]:
        """Events of one watch from `resource_version` until the server ends it. Raises Gone on 410."""
        server_timeout = int(settings.watch_timeout())
        query = [*query, ("watch", "1"), ("resourceVersion", resource_version),
                 ("allowWatchBookmarks", "true"), ("timeoutSeconds", str(server_timeout))]
        # read timeout past the server's: a silently dead connection ends instead of hanging forever
        response = self._send("GET", path, query=query, timeout=(settings.request_timeout(), server_timeout + 30))
        if response.status >= 400:
            raise _api_error(response.status, response.read())
        buffer = b""
        try:
            for chunk in response.response.stream(amt=None, decode_content=False):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    if event.get("type") == "ERROR":
                        status = event.get("object") or {}
                        raise _api_error(status.get("code", 500), json.dumps(status).encode())
                    yield event
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise Unreachable(f"watch of {path} broke: {_short(exc)}") from None
        finally:
            response.response.release_conn()

    # -- discovery ------------------------------------------------------------------------------------

    def resource(self, api_version: str, kind: str) -> Resource | None:
        """The REST mapping of apiVersion/kind, or None if the cluster does not serve it."""
        if api_version not in self._discovery:
            path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
            listing = self.get(path)
            self._discovery[api_version] = None if listing is None else {
                r["kind"]: Resource(api_version, r["kind"], r["name"], r["namespaced"])
                for r in listing.get("resources", []) if "/" not in r["name"]}
        kinds = self._discovery[api_version]
        return None if kinds is None else kinds.get(kind)

    def check_reachable(self) -> None:
        """Fail with exit 3 and a clear message if the API server does not answer within the connect timeout."""
        deadline = time.monotonic() + settings.connect_timeout()
        while True:
            try:
                self.request("GET", "/version")
                return
            except Unreachable as exc:
                if time.monotonic() > deadline:
                    raise ConnectionFailed(f"cannot reach the cluster of context {self.context!r}: {exc}") from None
                time.sleep(0.5)  # a bounded retry of a refused connection, not a status poll
            except ApiError as err:
                if err.status in (401, 403):
                    raise ConnectionFailed(f"the API server {self.host} rejected the credentials of context "
                                           f"{self.context!r}: {err.message}") from None
                raise


def _short(exc: BaseException) -> str:
    text = str(getattr(exc, "reason", None) or exc)
    return text.split(": ", 1)[-1][:200] if "Connection refused" not in text else "connection refused"


def _api_error(status: int, data: bytes) -> ApiError:
    try:
        body = json.loads(data)
        message, reason = body.get("message") or data.decode(), body.get("reason", "")
    except (ValueError, AttributeError):
        message, reason = data.decode("utf-8", errors="replace").strip() or f"HTTP {status}", ""
    cls = Gone if status == 410 else ApiError
    return cls(status, reason, message)


class Informer(threading.Thread):
    """List, then watch from the list's resourceVersion, forever: relist on 410 Gone, reconnect with backoff
    when the API server goes away. Puts `(name, kind, payload)` on `out`:
    ("SYNC", [objects]) after each list, ("ADDED"|"MODIFIED"|"DELETED", object) per event,
    ("DISCONNECTED", message) once per outage, ("FATAL", ApiError) on 403/404 (the thread then stops)."""

    def __init__(self, kube: Kube, name: str, path: str, query: list[tuple[str, str]], out: queue.Queue,
                 stop: threading.Event):
        super().__init__(name=f"informer-{name}", daemon=True)
        self.kube, self.key, self.path, self.query, self.out, self.stop = kube, name, path, query, out, stop

    def run(self) -> None:
        backoff, disconnected = 0.1, False
        while not self.stop.is_set():
            try:
                listing = self.kube.request("GET", self.path, query=self.query)
                disconnected, backoff = False, 0.1
                version = listing["metadata"]["resourceVersion"]
                self.out.put((self.key, "SYNC", listing.get("items", [])))
                while not self.stop.is_set():
                    for event in self.kube.watch(self.path, self.query, version):
                        if self.stop.is_set():
                            return
                        obj = event.get("object") or {}
                        version = (obj.get("metadata") or {}).get("resourceVersion", version)
                        if event["type"] != "BOOKMARK":
                            self.out.put((self.key, event["type"], obj))
            except Gone:
                continue  # relist
            except Unreachable as exc:
                if not disconnected:
                    self.out.put((self.key, "DISCONNECTED", str(exc)))
                    disconnected = True
                self.stop.wait(backoff)
                backoff = min(backoff * 2, settings.reconnect_backoff_max())
            except ApiError as err:
                if err.status in (401, 403, 404):
                    self.out.put((self.key, "FATAL", err))
                    return
                # 5xx while the API server starts up (etcd not ready): back off like an outage
                self.stop.wait(backoff)
                backoff = min(backoff * 2, settings.reconnect_backoff_max())
