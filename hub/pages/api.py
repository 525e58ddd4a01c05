"""JSON for scripts; a request without a live session gets 401, not the sign-in page."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Blueprint, jsonify

from mimamori.edge import contract
from mimamori.hub.pages.access import parts

bp = Blueprint("api", __name__, url_prefix="/api")


@bp.get("/devices")
def devices() -> Any:
    return jsonify(
        [
            {k: (contract.iso(v) if isinstance(v, datetime) else v) for k, v in d.items()}
            for d in parts().store.devices()
        ]
    )
