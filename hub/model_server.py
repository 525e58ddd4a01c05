"""The hub's model server: HTTPS on its own port (``[models]`` in hub.toml).

``GET /jobs/ID`` returns the model file of an update job, only to the device the job names:
the client must present a certificate from the fleet CA (``CERT_REQUIRED``) whose CN is that
device; anything else gets 403. A ``Range: bytes=N-`` request gets 206 with Content-Range,
so a device resumes a download its rural link cut. Waitress (the staff pages' server) cannot
ask for client certificates, so this is ``http.server`` with ``ssl`` on a thread of its own;
each request runs on a thread, its TLS handshake included.
"""

from __future__ import annotations

import contextlib
import http.server
import logging
import re
import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from werkzeug.http import parse_range_header

from mimamori.hub.config import ModelsSection

log = logging.getLogger(__name__)

#: the device a job names and the file it may fetch, or None for no such job
Target = Callable[[str], tuple[str, Path] | None]

CHUNK = 64 * 1024
#: seconds a client may take for its handshake and for each read of the answer
TIMEOUT_S = 60.0
_PATH = re.compile(r"/jobs/([a-z0-9][a-z0-9-]{0,63})")


class ModelServer:
    def __init__(self, cfg: ModelsSection, target: Target) -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cfg.cert_file, cfg.key_file)
        ctx.load_verify_locations(cfg.ca_file)
        ctx.verify_mode = ssl.CERT_REQUIRED
        handler = type("Handler", (_Handler,), {"target": staticmethod(target)})
        self.httpd = http.server.ThreadingHTTPServer((cfg.bind, cfg.port), handler)
        self.httpd.daemon_threads = True
        self.httpd.socket = ctx.wrap_socket(
            self.httpd.socket, server_side=True, do_handshake_on_connect=False
        )
        self.port = int(self.httpd.server_address[1])
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="model-server", daemon=True
        )

    def start(self) -> ModelServer:
        self._thread.start()
        log.info("model server on port %d", self.port)
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self.httpd.shutdown()
        self.httpd.server_close()


class _Handler(http.server.BaseHTTPRequestHandler):
    target: Target
    connection: ssl.SSLSocket
    shaken: bool

    def setup(self) -> None:
        self.request.settimeout(TIMEOUT_S)
        self.shaken = False
        try:  # here, not in accept(): a slow client delays no other
            self.request.do_handshake()
            self.shaken = True
        except OSError as e:  # no certificate, one from another CA, a port scan
            log.info("model server: no TLS session with %s: %s", self.client_address[0], e)
        super().setup()

    def handle(self) -> None:
        if self.shaken:
            with contextlib.suppress(OSError):  # a client gone mid-file
                super().handle()

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        cn = _common_name(self.connection.getpeercert() or {})
        match = _PATH.fullmatch(self.path)
        found = self.target(match[1]) if match else None
        if found is None or found[0] != cn:
            log.warning("model server: %s may not fetch %s", cn or "?", self.path[:100])
            self.send_error(403)
            return
        try:
            f = found[1].open("rb")
        except FileNotFoundError:
            self.send_error(404)
            return
        with f:
            size = f.seek(0, 2)
            start, end = 0, size
            wanted = parse_range_header(self.headers.get("Range"))
            if wanted is not None and len(wanted.ranges) == 1 and wanted.units == "bytes":
                span = wanted.range_for_length(size)
                if span is None:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                start, end = span
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
            else:
                self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(end - start))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            log.info("model server: %s fetches %s from byte %d", cn, self.path, start)
            f.seek(start)
            while start < end and (block := f.read(min(CHUNK, end - start))):
                self.wfile.write(block)
                start += len(block)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("model server: " + format, *args)


def _common_name(cert: dict[str, Any]) -> str:
    """The CN of a peer certificate as ``SSLSocket.getpeercert()`` gives it, or ''."""
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return ""
