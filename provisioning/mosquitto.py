"""Run a Mosquitto broker with a fleet's generated config (demo and tests)."""

from __future__ import annotations

import logging
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

log = logging.getLogger(__name__)


class BrokerNotFound(RuntimeError):
    """The mosquitto binary is not installed."""


def find_mosquitto() -> str:
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if candidate and Path(candidate).exists():
            return candidate
    raise BrokerNotFound(
        "mosquitto not found: install it with `sudo apt-get install mosquitto` "
        "(./run.sh does this for you)"
    )


def wait_port(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s") from None
            time.sleep(0.05)


class MosquittoProcess:
    """A broker process; ``stop()`` is a clean shutdown (state saved), ``kill()`` is not."""

    def __init__(
        self,
        conf: Path,
        port: int,
        host: str = "127.0.0.1",
        log_file: Path | None = None,
        *,
        more_ports: tuple[int, ...] = (),
    ):
        """``port`` is the devices' listener; ``start()`` also waits for ``more_ports`` (the
        hub's listener), so whoever connects next finds every listener open."""
        self.conf, self.port, self.host = conf, port, host
        self.more_ports = more_ports
        self.log_file = log_file or conf.with_name("mosquitto.log")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> MosquittoProcess:
        out = self.log_file.open("ab")
        self.proc = subprocess.Popen(
            [find_mosquitto(), "-c", str(self.conf)], stdout=out, stderr=subprocess.STDOUT
        )
        out.close()
        try:
            for port in (self.port, *self.more_ports):
                wait_port(self.host, port)
        except TimeoutError:
            self.kill()
            raise RuntimeError(
                f"mosquitto did not start; see {self.log_file}:\n"
                + self.log_file.read_text(errors="replace")[-2000:]
            ) from None
        log.info("mosquitto listening on %s:%d (pid %d)", self.host, self.port, self.proc.pid)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def reload(self) -> None:
        """SIGHUP: re-read the ACL, CRL and certificates without dropping other sessions."""
        if self.proc:
            self.proc.send_signal(signal.SIGHUP)

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None
