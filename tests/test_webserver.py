"""The staff pages' and the kiosk screen's web server stops cleanly, however often."""

from __future__ import annotations

import socket
import threading
import urllib.request
from typing import Any

import pytest

from mimamori.edge.webserver import WebServer
from tests.conftest import free_port


def hello(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


def test_stopping_while_serving_leaves_no_thread_error_and_frees_the_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    errors: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: errors.append(args.exc_value))
    for i in range(150):  # closing from outside raced the loop's select() about 1 in 12
        port = free_port()
        server = WebServer(hello, host="127.0.0.1", port=port, threads=2, name="t").start()
        if i % 50 == 0:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                assert r.read() == b"hello"
        server.stop()
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            pass
    assert errors == [], errors


def test_a_second_stop_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    errors: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: errors.append(args.exc_value))
    server = WebServer(hello, host="127.0.0.1", port=free_port(), threads=1, name="t").start()
    stoppers = [threading.Thread(target=server.stop) for _ in range(3)]
    for t in stoppers:
        t.start()
    for t in stoppers:
        t.join(10)
    server.stop()
    assert errors == [], errors
