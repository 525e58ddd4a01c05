"""Resumable model downloads: a signed model streamed from the hub into its slot.

The body goes into ``.vN-<sha256 prefix>.partial`` in the model's slot, never into memory:
capped at the signed size, hashed as it goes, fsynced. A cut connection (a rural link that
drops mid-file) is retried with backoff and the download continues where it stopped with
``Range: bytes=N-``; the kept prefix is hashed again from disk first, so the final sha256
covers every byte. A server that answers a range with the whole file (200) starts it over.

The partial file survives a failed attempt and a restart of the device (the retained job runs
again and resumes); it is removed when the download is given up or refused, and when a job
for another version or other bytes finds it.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import ssl
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from mimamori.edge import contract
from mimamori.edge.errors import UpdateFailed, UpdateRejected

log = logging.getLogger(__name__)

#: opens a model URL from a byte offset and returns the body as a stream (read in chunks,
#: then closed); an HTTP response also carries ``status`` and ``headers``
Fetch = Callable[[str, int], BinaryIO]
#: told the bytes on disk and the resumes so far, at each attempt and every tenth of the file
Progress = Callable[[int, int], None]

#: seconds to connect to the model server and to wait for each read of its answer
FETCH_TIMEOUT_S = 30.0
#: a whole download must finish within this, however slowly its bytes trickle in ...
DOWNLOAD_DEADLINE_S = 30 * 60.0
#: ... or, for a large model, within the time it takes at this rate (bits/s: a weak GPRS-class
#: link; the 18.6 MB monkey model gets 2.6 hours, not the 30 minutes that 80 kbit/s needs)
SLOWEST_LINK_BPS = 16_000

CHUNK = 64 * 1024
#: attempts in a row that bring no new byte before the download is given up
MAX_IDLE_ATTEMPTS = 4
#: the wait after a failed attempt doubles from the first value up to the second
BACKOFF_S = (0.5, 30.0)

_CONTENT_RANGE = re.compile(r"bytes (\d+)-\d+/(\d+|\*)")


def deadline_for(size: int) -> float:
    """Seconds a download of ``size`` bytes may take in all: 30 minutes, more for large models
    (a stalled link is given up sooner, after MAX_IDLE_ATTEMPTS attempts with no new byte)."""
    return max(DOWNLOAD_DEADLINE_S, size * 8 / SLOWEST_LINK_BPS)


class _Cut(Exception):
    """The body ended before the signed size: worth another attempt."""


def partial_file(slot: Path, manifest: contract.ModelManifest) -> Path:
    return slot / f".v{manifest.version}-{manifest.sha256[:16]}.partial"


def download(
    manifest: contract.ModelManifest,
    url: str,
    fetch: Fetch,
    slot: Path,
    *,
    deadline_s: float = DOWNLOAD_DEADLINE_S,
    progress: Progress | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Path:
    """Fetch ``url`` into the slot's partial file, resuming after cuts; return the verified
    file (for ``ModelStore.install``).

    Raises UpdateRejected for a body larger than signed or with another sha256; UpdateFailed
    for one that still ends short after MAX_IDLE_ATTEMPTS attempts without a new byte, or
    takes longer than ``deadline_s``; the error of the last attempt (OSError, HTTPException)
    when the server cannot be reached. The partial file is then removed.
    """
    slot.mkdir(parents=True, exist_ok=True)
    path = partial_file(slot, manifest)
    for stale in slot.glob(".*.partial"):  # another version's, or a power cut's before resume
        if stale != path:
            stale.unlink(missing_ok=True)
    deadline = clock() + deadline_s
    resumes, idle, furthest, wait = 0, 0, -1, BACKOFF_S[0]
    try:
        while True:
            have = _kept(path, manifest.size)
            if progress is not None:
                progress(have, resumes)
            try:
                if have < manifest.size:
                    with fetch(url, have) as stream:
                        digest = _append(
                            stream, path, have, manifest, deadline, clock, progress, resumes
                        )
                else:  # complete before a restart: only its hash is left to check
                    with path.open("rb") as f:
                        digest = _prefix(f, have).hexdigest()
                if digest != manifest.sha256:
                    raise UpdateRejected(
                        f"model sha256 {digest} does not match the manifest's {manifest.sha256}"
                    )
                return path
            except (OSError, http.client.HTTPException, _Cut) as e:
                have = _kept(path, manifest.size)
                if have > furthest:
                    furthest, idle, wait = have, 0, BACKOFF_S[0]
                else:
                    idle += 1
                if idle >= MAX_IDLE_ATTEMPTS or clock() + wait > deadline:
                    if isinstance(e, _Cut):
                        raise UpdateFailed(str(e)) from None
                    raise
                log.info("model download cut at %d bytes (%s); resuming in %.1f s", have, e, wait)
                sleep(wait)
                wait = min(wait * 2, BACKOFF_S[1])
                resumes += 1
    except Exception:
        path.unlink(missing_ok=True)
        raise


def _kept(path: Path, size: int) -> int:
    try:
        have = path.stat().st_size
    except FileNotFoundError:
        return 0
    if have > size:  # cannot be a prefix of the signed file
        path.unlink()
        return 0
    return have


def _append(
    stream: BinaryIO,
    path: Path,
    offset: int,
    manifest: contract.ModelManifest,
    deadline: float,
    clock: Callable[[], float],
    progress: Progress | None,
    resumes: int,
) -> str:
    """Write ``stream`` into ``path`` from where the server starts it, capped and timed;
    return the sha256 of the whole file (the kept prefix hashed again from disk)."""
    size = manifest.size
    start = _start_of(stream, offset)
    announced = _header(stream, "Content-Length")
    if announced is not None and announced.isdigit() and start + int(announced) > size:
        raise UpdateRejected(
            f"download exceeds the signed size of {size} bytes "
            f"(the server announces {start + int(announced)})"
        )
    step = max(size // 10, 1)
    with path.open("r+b" if path.exists() else "wb") as f:
        digest = _prefix(f, start)
        f.truncate(start)
        got = start
        while chunk := stream.read(min(CHUNK, size + 1 - got)):
            if got // step != (got + len(chunk)) // step and progress is not None:
                progress(got + len(chunk), resumes)
            got += len(chunk)
            if got > size:
                raise UpdateRejected(f"download exceeds the signed size of {size} bytes")
            if clock() > deadline:
                raise UpdateFailed(
                    f"download took longer than the deadline ({got} of the signed {size} bytes)"
                )
            digest.update(chunk)
            f.write(chunk)
        f.flush()
        os.fsync(f.fileno())
    if got < size:
        raise _Cut(f"download ended after {got} of the signed {size} bytes")
    return digest.hexdigest()


def _start_of(stream: BinaryIO, offset: int) -> int:
    """Where the body starts: ``offset`` for a 206 that says so, 0 for a whole file."""
    if offset == 0 or getattr(stream, "status", 206) != 206:
        return 0
    match = _CONTENT_RANGE.fullmatch(_header(stream, "Content-Range") or "")
    if match is None or int(match[1]) != offset:
        raise http.client.HTTPException(
            f"asked for bytes from {offset}, the server sent {_header(stream, 'Content-Range')}"
        )
    return offset


def _header(stream: BinaryIO, name: str) -> str | None:
    headers = getattr(stream, "headers", None)
    return headers.get(name) if headers is not None else None


def _prefix(f: BinaryIO, n: int) -> hashlib._Hash:
    """The sha256 state after the first ``n`` bytes of ``f`` (left positioned at ``n``)."""
    digest = hashlib.sha256()
    f.seek(0)
    while n > f.tell() and (block := f.read(min(1 << 20, n - f.tell()))):
        digest.update(block)
    return digest


def https_fetch(ca_file: Path | None, cert_file: Path | None, key_file: Path | None) -> Fetch:
    """Open model downloads over HTTPS with this device's certificate, from an offset."""
    ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    if cert_file and key_file:
        ctx.load_cert_chain(str(cert_file), str(key_file))

    def fetch(url: str, offset: int) -> BinaryIO:
        request = urllib.request.Request(url)  # noqa: S310 (run_job allows https only)
        if offset:
            request.add_header("Range", f"bytes={offset}-")
        return urllib.request.urlopen(  # noqa: S310
            request, context=ctx, timeout=FETCH_TIMEOUT_S
        )

    return fetch
