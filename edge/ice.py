"""One WebRTC ICE server entry (STUN, or the town's own TURN server with its credential).

The kiosk's config (``[kiosk] ice_servers``) and the hub's (``[counter] ice_servers``) read
the same entries and hand them to the browser that opens the voice call; each side lists
the TURN server by the address it reaches it at. A plain URL string still reads as an entry
without credentials (``"stun:stun.city.local"``)::

    ice_servers = [{urls = "turn:turn.city.local:3478", username = "kiosk-01",
                    credential = "..."}]

The credential is a ``SecretStr``: reprs, logs, dumps and the twin's reported config show
``**********``; only ``for_browser`` reveals it, for the page that opens the peer connection.
"""

from __future__ import annotations

import re
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
        if self.username is not None and len(turn) != len(self.urls):
            raise ValueError("username and credential are for turn: and turns: URLs only")
        if turn and self.username is None:
            raise ValueError(
                f"{turn[0]}: a TURN server needs username and credential "
                "(browsers refuse one without)"
            )
        return self

    def for_browser(self) -> dict[str, Any]:
        """The entry as ``RTCPeerConnection({iceServers: [...]})`` takes it, credential
        revealed: only for the page that opens the call."""
        out: dict[str, Any] = {"urls": self.urls}
        if self.username is not None and self.credential is not None:
            out["username"] = self.username
            out["credential"] = self.credential.get_secret_value()
        return out
