"""A WSGI app served by waitress on a thread of its own, that stops without a race.

Closing a waitress server from another thread while its loop sits in ``select()`` kills the
loop with ``EBADF`` (Pylons/waitress#468, fixed upstream after 3.0.2). So ``stop()`` hands
the close to the loop itself (waitress's trigger runs it there), which then finds nothing
left to watch and returns; the worker threads are shut down after.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

from waitress import wasyncore
from waitress.server import create_server

log = logging.getLogger(__name__)


class WebServer:
    def __init__(self, app: Any, *, host: str, port: int, threads: int, name: str) -> None:
        self._server: Any = create_server(app, host=host, port=port, threads=threads, ident=name)
        self.port = int(self._server.effective_port)
        self._thread = threading.Thread(target=self._server.run, name=name, daemon=True)
        self._stopped = False
        self._lock = threading.Lock()

    def start(self) -> WebServer:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving; a second call does nothing."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        server = self._server
        if self._thread.is_alive():
            # OSError: the loop already closed its trigger on its way out
            with contextlib.suppress(OSError):
                server.trigger.pull_trigger(lambda: wasyncore.close_all(server._map))
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("web server thread did not stop within %.0f s", timeout)
        else:
            server.close()
        server.task_dispatcher.shutdown()
