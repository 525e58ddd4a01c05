"""One WebRTC ICE server entry (STUN, or the town's own TURN server with its credential).

The kiosk's config (``[kiosk] ice_servers``) and the hub's (``[counter] ice_servers``) read
the same entries and hand them to the browser that opens the voice call; each side lists
the TURN server by the address it reaches it at. A plain URL string still reads as an entry
without credentials (``"stun:stun.city.local"``)::

    ice_servers = [{urls = "turn:turn.city.local:3478", username = "kiosk-01",
                    credential = "..."}]

For a fleet, coturn's shared secret (``use-auth-secret``, the TURN REST API) spares one
password per kiosk: with ``secret_file`` instead of ``username``/``credential`` each page is
given a credential of its own that expires (user name ``EXPIRY:USER``, password
base64(HMAC-SHA1(secret, user name)))::

    ice_servers = [{urls = "turn:turn.city.local:3478", secret_file = "turn-secret"}]

The credential is a ``SecretStr``: reprs, logs, dumps and the twin's reported config show
``**********``; only ``for_browser`` reveals it (or mints one from the secret), for the page
that opens the peer connection.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

#: stun:HOST[:PORT], turn:HOST[:PORT][?transport=udp|tcp] (RFC 7064 / 7065)
URL_RE = re.compile(
    r"^(?P<scheme>stuns?|turns?):(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?"
    r"(\?transport=(udp|tcp))?$"
)


class IceServer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    urls: list[str] = Field(
        min_length=1,
        description="stun:/turn:/turns: URLs of one server, e.g. 'turn:turn.city.local:3478'",
    )
    username: str | None = Field(None, max_length=256, description="TURN user name")
    credential: SecretStr | None = Field(
        None, description="TURN password (never logged, shown as **********)"
    )
    secret_file: Path | None = Field(
        None,
        description="coturn's static-auth-secret (use-auth-secret), instead of username and "
        "credential: each page gets a credential of its own, good for ttl_s",
    )
    ttl_s: int = Field(
        12 * 3600, ge=60, le=7 * 86400, description="how long a minted credential is good for"
    )

    @model_validator(mode="before")
    @classmethod
    def _plain_url(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = {"urls": v}
        if isinstance(v, dict) and isinstance(v.get("urls"), str):
            v = {**v, "urls": [v["urls"]]}
        return v

    @field_validator("urls")
    @classmethod
    def _urls(cls, v: list[str]) -> list[str]:
        for url in v:
            if not URL_RE.match(url):
                raise ValueError(
                    f"expected stun:HOST[:PORT], turn:HOST[:PORT] or turns:HOST[:PORT], got {url!r}"
                )
        return v

    @model_validator(mode="after")
    def _credentials(self) -> IceServer:
        turn = [u for u in self.urls if u.startswith("turn")]
        if (self.username is None) != (self.credential is None):
            raise ValueError("give both username and credential, or neither")
        if self.username is not None and self.secret_file is not None:
            raise ValueError("give username and credential, or secret_file, not both")
        authed = self.username is not None or self.secret_file is not None
        if authed and len(turn) != len(self.urls):
            raise ValueError("credentials are for turn: and turns: URLs only")
        if turn and not authed:
            raise ValueError(
                f"{turn[0]}: a TURN server needs username and credential, or secret_file "
                "(browsers refuse one without)"
            )
        return self

    def for_browser(self, user: str, now: float | None = None) -> dict[str, Any]:
        """The entry as ``RTCPeerConnection({iceServers: [...]})`` takes it, credential
        revealed, or minted for ``user`` from the shared secret: only for the page that
        opens the call."""
        out: dict[str, Any] = {"urls": self.urls}
        if self.username is not None and self.credential is not None:
            out["username"] = self.username
            out["credential"] = self.credential.get_secret_value()
        elif self.secret_file is not None:
            expires = int(time.time() if now is None else now) + self.ttl_s
            secret = self.secret_file.read_text().strip()
            out["username"], out["credential"] = rest_credential(secret, user, expires)
        return out


def rest_credential(secret: str, user: str, expires: int) -> tuple[str, str]:
    """coturn's time-limited credential (TURN REST API): user name ``EXPIRY:USER`` (Unix
    time), password base64(HMAC-SHA1(secret, user name))."""
    username = f"{expires}:{user}"
    mac = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(mac).decode()


def resolve(servers: list[IceServer], base: Path) -> str | None:
    """Make each ``secret_file`` relative to ``base`` absolute; the problem, if one cannot
    be read (``ice_servers.N.secret_file: ...``)."""
    for i, s in enumerate(servers):
        if s.secret_file is None:
            continue
        if not s.secret_file.is_absolute():
            s.secret_file = base / s.secret_file
        try:
            if not s.secret_file.read_text().strip():
                return f"ice_servers.{i}.secret_file: {s.secret_file} is empty"
        except OSError as e:
            return f"ice_servers.{i}.secret_file: cannot read {s.secret_file} ({e.strerror})"
    return None
