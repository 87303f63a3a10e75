"""Connecting to an API server that accepts the TCP connection and never answers (a hung apiserver, a proxy or a
load balancer with no backend): every harness command gives up within its timeouts with exit 3, naming the cluster,
instead of hanging in the client's discovery request (which passes no timeout of its own)."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from kuberay_llm import cli, exitcodes


@pytest.fixture
def silent_server():
    """A real listening socket that accepts every connection and never writes a byte."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted, stop = [], threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1], accepted
    stop.set()
    thread.join(2)
    for conn in accepted:
        conn.close()
    server.close()


@pytest.mark.parametrize("command", [["wait", "llama-8b", "--timeout", "60s"], ["status", "llama-8b"]])
def test_a_server_that_never_answers_is_unreachable(command, silent_server, tmp_path, monkeypatch, capsys):
    port, accepted = silent_server
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(f"""\
apiVersion: v1
kind: Config
clusters: [{{name: silent, cluster: {{server: "http://127.0.0.1:{port}"}}}}]
contexts: [{{name: silent, context: {{cluster: silent, user: u, namespace: llm}}}}]
current-context: silent
users: [{{name: u, user: {{token: t}}}}]
""")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.setenv("KUBERAY_LLM_REQUEST_TIMEOUT", "1s")
    monkeypatch.setenv("KUBERAY_LLM_CONNECT_TIMEOUT", "1s")
    started = time.monotonic()
    code = cli.main(command)
    took = time.monotonic() - started
    assert accepted, "the client never connected"
    assert code == exitcodes.UNAVAILABLE == 3
    assert capsys.readouterr().err.strip() == (
        f"error: cannot reach the cluster of context 'silent': API server http://127.0.0.1:{port} unreachable: "
        "Read timed out. (read timeout=1.0)")
    assert took < 10, f"gave up after {took:.1f}s"
