"""The cluster connection, through the official `kubernetes` client (pinned by pyproject; read at 37.0.2):
its kubeconfig/in-cluster loading, TLS and auth, its DynamicClient for requests, discovery and server-side
apply, and its `watch.Watch` for watch streams. Ours on top: plain dicts in and out (the shape of `kubectl get
-o json`, for custom resources and core objects alike), list+watch informers and one-line errors.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import queue
import tempfile
import threading
import time
from collections.abc import Iterator
from urllib.parse import quote

import urllib3

from kuberay_llm import exitcodes, settings
from kuberay_llm.errors import UserError
from kuberay_llm.harness.errors import ConnectionFailed

RBAC_HINT = "grant the harness Role of deploy/rbac/ in this namespace (see deploy/rbac/README.md)"


class ApiError(UserError):
    """A non-2xx answer of the API server, with the server's own message. Uncaught, the CLI prints it as one
    line: exit 3 (unavailable) for missing rights (with the RBAC hint), 1 otherwise."""

    def __init__(self, status: int, reason: str, message: str, details: dict | None = None):
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message
        self.details = details or {}  # the Status's details (e.g. the causes of an apply conflict)
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
POD = Resource("v1", "Pod", "pods", True)
EVENT = Resource("v1", "Event", "events", True)
SERVICE = Resource("v1", "Service", "services", True)


def forbidden_message(err: ApiError) -> str:
    return f"{err.message}: {RBAC_HINT}"


def _as_dict(_client, data):
    # DynamicClient.request's `serializer` hook (kubernetes/dynamic/client.py, meta_request): the parsed JSON
    # as it came, not wrapped in a ResourceInstance
    return data


class Kube:
    """One connection to the cluster of the current kube context (or the pod's service account)."""

    def __init__(self, api_client, namespace: str, context: str):
        self.api = api_client
        self.namespace = namespace
        self.context = context
        self._dynamic = None
        self._discovery_cache: tempfile.TemporaryDirectory | None = None
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

    @property
    def dynamic(self):
        """The client's DynamicClient, made on first use (it reads /version and /apis when made)."""
        if self._dynamic is None:
            from kubernetes.dynamic import DynamicClient

            # Its LazyDiscoverer keeps a discovery cache file, by default in the temp dir keyed by the server URL
            # only (kubernetes/dynamic/discovery.py, Discoverer.__init__): another cluster at the same address (a
            # restarted local control plane, kind's 127.0.0.1:6443) would inherit its resource list. One per
            # connection instead; a miss still rediscovers (LazyDiscoverer.search).
            class TimedDynamicClient(DynamicClient):
                # The discovery it runs when made (/version, /apis) passes no _request_timeout
                # (kubernetes/dynamic/discovery.py _load_server_info): a server that accepts the connection and
                # never answers would hang every command at connect.
                def request(self, method, path, body=None, **params):
                    params.setdefault("_request_timeout", (settings.request_timeout(),) * 2)  # connect, read
                    return super().request(method, path, body, **params)

            cache = tempfile.TemporaryDirectory(prefix="kuberay-llm-discovery-")
            with self._errors():
                self._dynamic = TimedDynamicClient(self.api, cache_file=os.path.join(cache.name, "discovery.json"))
            self._discovery_cache = cache
        return self._dynamic

    @contextlib.contextmanager
    def _errors(self, what: str | None = None):
        """The client's exceptions as ours: ApiError/Gone with the server's message, Unreachable for no answer."""
        from kubernetes.client.exceptions import ApiException

        try:
            yield
        except ApiException as exc:  # the dynamic client's DynamicApiError subclasses it
            raise _api_error(exc) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise Unreachable(f"{what} broke: {_short(exc)}" if what else
                              f"API server {self.host} unreachable: {_short(exc)}") from None

    # -- requests -------------------------------------------------------------------------------------

    def request(self, method: str, path: str, *, query: list[tuple[str, str]] | None = None,
                body: dict | None = None, content_type: str = "application/json", timeout=None) -> dict:
        # the client's REST layer serializes a dict body as JSON, also for the +yaml apply patch (JSON is YAML)
        with self._errors():
            data = self.dynamic.request(method, path, body=body, query_params=list(query or []),
                                        content_type=content_type if body is not None else None,
                                        _request_timeout=timeout or settings.request_timeout(), serializer=_as_dict)
        return data if isinstance(data, dict) else {}  # an empty answer comes back as ""

    def get(self, path: str) -> dict | None:
        """The object at `path`, or None if it does not exist."""
        try:
            return self.request("GET", path)
        except ApiError as err:
            if err.status == 404:
                return None
            raise

    def text(self, path: str, query: list[tuple[str, str]]) -> str:
        with self._errors():
            response = self.dynamic.request("GET", path, query_params=list(query), serialize=False,
                                            _request_timeout=settings.request_timeout())
            return response.data.decode("utf-8", errors="replace")

    def server_side_apply(self, obj: dict, *, field_manager: str, dry_run: bool = False,
                          force: bool = False) -> dict:
        """`kubectl apply --server-side` of one object, with strict field validation: an unknown or misplaced
        field is rejected with its path instead of being dropped. Returns the object as stored (or would be)."""
        group, _, version = obj["apiVersion"].rpartition("/")
        with self._errors():
            resource = self._find(group, version, obj["kind"])
            if resource is None:
                raise ApiError(404, "NotFound", f"the server does not serve {obj['apiVersion']} {obj['kind']}")
            # DynamicClient.server_side_apply (kubernetes/dynamic/client.py): PATCH application/apply-patch+yaml,
            # `force_conflicts` as ?force=true; fieldValidation has no keyword there, so it goes as a query param
            return resource.server_side_apply(
                body=obj, namespace=(obj.get("metadata") or {}).get("namespace"), field_manager=field_manager,
                force_conflicts=True if force else None, dry_run="All" if dry_run else None,
                query_params=[("fieldValidation", "Strict")], _request_timeout=settings.request_timeout(),
                serializer=_as_dict)

    def watch(self, path: str, query: list[tuple[str, str]], resource_version: str) -> Iterator[dict]:
        """Events ({"type", "object"}, BOOKMARKs included) of one watch from `resource_version` until the server
        ends it (its timeoutSeconds, from `query` or KUBERAY_LLM_WATCH_TIMEOUT). Raises Gone on 410."""
        from kubernetes import watch

        server_timeout = next((int(v) for k, v in query if k == "timeoutSeconds"), int(settings.watch_timeout()))
        # kubernetes/watch/watch.py (Watch.stream): splits the stream into lines, parses each event and raises
        # an ERROR event as ApiException(code); with timeout_seconds given it never re-watches on its own, so a
        # 410 reaches the informer, which relists. return_type="object" keeps the objects plain dicts.
        watcher = watch.Watch(return_type="object")
        events = watcher.stream(
            self.dynamic.request, "GET", path, serialize=False,
            query_params=[(k, v) for k, v in query if k != "timeoutSeconds"], resource_version=resource_version,
            allow_watch_bookmarks=True, timeout_seconds=server_timeout,
            # read timeout past the server's: a silently dead connection ends instead of hanging forever
            _request_timeout=(settings.request_timeout(), server_timeout + 30))
        try:
            with self._errors(f"watch of {path}"):
                for event in events:
                    if event is not None:  # Watch.stream yields None for a blank line (unmarshal_event)
                        yield {"type": event["type"], "object": event["raw_object"]}
        finally:
            events.close()  # closes the response (Watch.stream's finally) when the caller stops early

    # -- discovery ------------------------------------------------------------------------------------

    def _find(self, group: str, version: str, kind: str):
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        try:
            # prefix spelled out: with the core group ("" reads as "any") the search would fetch every group's v1
            return self.dynamic.resources.get(prefix="apis" if group else "api", group=group or None,
                                              api_version=version, kind=kind)
        except ResourceNotFoundError:
            return None

    def resource(self, api_version: str, kind: str) -> Resource | None:
        """The REST mapping of apiVersion/kind, or None if the cluster does not serve it."""
        group, _, version = api_version.rpartition("/")
        with self._errors():
            found = self._find(group, version, kind)
        return None if found is None else Resource(api_version, kind, found.name, found.namespaced)

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


def _api_error(exc) -> ApiError:
    """An ApiError of the client's ApiException: the Status body's message, or the watch ERROR event's reason."""
    status = exc.status or 500
    try:
        body = json.loads(exc.body)
        message, reason, details = body.get("message") or exc.body, body.get("reason", ""), body.get("details")
    except (TypeError, ValueError, AttributeError):
        message, reason, details = (exc.body or exc.reason or f"HTTP {status}").strip(), "", None
    cls = Gone if status == 410 else ApiError
    return cls(status, reason, message, details)


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
