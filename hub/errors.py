"""Exceptions raised by hub code.

    HubError
     └── HubConfigError (+ edge.errors.ConfigError, a ValueError)   hub.toml is missing or invalid

A config error has one shape on both sides (``source`` and one line per field in
``problems``): the hub's subclasses the device code's ``ConfigError``. Wire-format problems
raise ``edge.contract.ContractError`` (the shared contract module).
"""

from __future__ import annotations

from mimamori.edge.errors import ConfigError


class HubError(Exception):
    """Base of every error raised by mimamori hub code."""


class HubConfigError(HubError, ConfigError):
    """hub.toml failed validation; ``problems`` has one line per field."""
