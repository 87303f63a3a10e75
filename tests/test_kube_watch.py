"""Kube.watch and the Informer over the official client's `watch.Watch`: events split across chunks, BOOKMARKs,
the ERROR event of an expired resourceVersion (410: Gone, then a relist) and a connection dropped mid-stream.

A fake API server (a local HTTP server speaking the watch wire format) stands in for kube-apiserver here: the
real one sends the 410 ERROR event only once etcd has compacted the revision a watch resumes from, which a test
cannot bring about in seconds (its watch cache keeps minutes of history), nor does it cut a stream half-way.
Everything else the harness does with watches runs against the real kube-apiserver in tests/controlplane/.
"""

from __future__ import annotations

import json
import queue
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from kuberay_llm.harness.kube import ApiError, Gone, Informer, Kube, Unreachable

PATH = "/api/v1/namespaces/default/configmaps"


def event(type_: str, name: str, version: str) -> bytes:
    return json.dumps({"type": type_, "object": {"kind": "ConfigMap",
                                                 "metadata": {"name": name, "resourceVersion": version}}}).encode()


EXPIRED = json.dumps({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                                  "code": 410, "reason": "Expired",
                                                  "message": "too old resource version: 5 (12)"}}).encode()


class FakeApiServer(ThreadingHTTPServer):
    """Answers discovery and lists; each watch request takes the next script: a list of chunks to send
    (None = drop the connection there)."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.watch_scripts: queue.Queue = queue.Queue()
        self.requests: list[tuple[str, dict]] = []
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):  # noqa: N802 - http.server's name
        url = urlparse(self.path)
        query = parse_qs(url.query)
        self.server.requests.append((url.path, query))
        if query.get("watch") == ["true"]:
            return self.stream(self.server.watch_scripts.get(timeout=5))
        body = {"/version": {"major": "1", "minor": "36", "gitVersion": "v1.36.3"},
                "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": []}}.get(
            url.path, {"kind": "ConfigMapList", "metadata": {"resourceVersion": "5"}, "items": []})
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def stream(self, chunks):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for chunk in chunks:
            if chunk is None:  # cut mid-stream: a chunk announced longer than what follows
                self.wfile.write(b"ff\r\n{\"type\"")
                self.wfile.flush()
                self.connection.shutdown(2)
                return
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")


@pytest.fixture
def server():
    fake = FakeApiServer()
    yield fake
    fake.shutdown()
    fake.server_close()


@pytest.fixture
def kube(server, monkeypatch):
    from kubernetes import client

    monkeypatch.setenv("KUBERAY_LLM_REQUEST_TIMEOUT", "5s")
    configuration = client.Configuration()
    configuration.host = server.url
    configuration.retries = False
    return Kube(client.ApiClient(configuration), "default", "fake")


def test_events_split_across_chunks_come_whole_with_bookmarks_and_the_watch_query(server, kube):
    added, bookmark = event("ADDED", "a", "6"), event("BOOKMARK", "", "9")
    server.watch_scripts.put([added[:17], added[17:] + b"\n", b"\n", bookmark + b"\n" + event("MODIFIED", "a", "10"),
                              b"\n"])

    events = list(kube.watch(PATH, [("labelSelector", "app=x"), ("timeoutSeconds", "7")], "5"))

    assert [(e["type"], e["object"]["metadata"]["resourceVersion"]) for e in events] == [
        ("ADDED", "6"), ("BOOKMARK", "9"), ("MODIFIED", "10")]
    assert isinstance(events[0]["object"], dict) and set(events[0]) == {"type", "object"}
    path, query = server.requests[-1]
    assert path == PATH
    assert query["resourceVersion"] == ["5"] and query["allowWatchBookmarks"] == ["true"]
    assert query["timeoutSeconds"] == ["7"] and query["labelSelector"] == ["app=x"]


def test_the_error_event_of_an_expired_resource_version_is_gone(server, kube):
    server.watch_scripts.put([event("ADDED", "a", "6") + b"\n", EXPIRED + b"\n"])

    watch = kube.watch(PATH, [], "5")
    assert next(watch)["type"] == "ADDED"
    with pytest.raises(Gone) as caught:
        next(watch)

    assert caught.value.status == 410 and "too old resource version: 5 (12)" in caught.value.message
    assert sum(1 for path, q in server.requests if q.get("watch")) == 1  # no re-watch behind the caller's back


def test_another_error_event_is_an_api_error(server, kube):
    server.watch_scripts.put([json.dumps({"type": "ERROR", "object": {
        "kind": "Status", "code": 500, "reason": "InternalError", "message": "etcd is down"}}).encode() + b"\n"])

    with pytest.raises(ApiError) as caught:
        list(kube.watch(PATH, [], "5"))

    assert caught.value.status == 500 and not isinstance(caught.value, Gone) and "etcd is down" in str(caught.value)


def test_a_stream_cut_half_way_is_unreachable_in_one_line(server, kube):
    server.watch_scripts.put([event("ADDED", "a", "6") + b"\n", None])

    with pytest.raises(Unreachable) as caught:
        list(kube.watch(PATH, [], "5"))

    assert str(caught.value).startswith(f"watch of {PATH} broke: ") and "\n" not in str(caught.value)


def test_the_informer_relists_after_gone_and_goes_on_watching(server, kube):
    server.watch_scripts.put([EXPIRED + b"\n"])
    server.watch_scripts.put([event("ADDED", "b", "13") + b"\n"])
    out, stop = queue.Queue(), threading.Event()
    informer = Informer(kube, "configmaps", PATH, [], out, stop)
    informer.start()
    try:
        seen = [out.get(timeout=10)[1:] for _ in range(3)]
    finally:
        stop.set()
        server.watch_scripts.put([])  # ends the watch the informer may have opened since

    assert [kind for kind, _ in seen] == ["SYNC", "SYNC", "ADDED"]
    assert seen[2][1]["metadata"]["name"] == "b"
    lists = [q for path, q in server.requests if path == PATH and not q.get("watch")]
    assert len(lists) >= 2
