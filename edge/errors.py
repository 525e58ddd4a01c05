"""Exceptions raised by device code.

    MimamoriError
     ├── ConfigError (+ ValueError)     a device config file or twin patch is invalid
     │                                  (hub.errors.HubConfigError subclasses it for hub.toml)
     ├── OutboxError (+ RuntimeError)   the store-and-forward database cannot be used
     ├── UpdateRejected (+ ValueError)  a model update is not acceptable (signature, hash,
     │                                  size, version, expiry); nothing was changed
     └── UpdateFailed (+ RuntimeError)  an acceptable update could not be fetched, installed
                                        or failed its self-test

Wire-format problems raise ``edge.contract.ContractError`` (a ``ValueError``), which lives in
the contract module because the hub raises it too.
"""

from __future__ import annotations


class MimamoriError(Exception):
    """Base of every error raised by mimamori device code."""


class ConfigError(MimamoriError, ValueError):
    """A config file or twin patch failed validation; ``problems`` has one line per field."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


class OutboxError(MimamoriError, RuntimeError):
    """The outbox database could not be opened or written."""


class UpdateRejected(MimamoriError, ValueError):
    """The update is not acceptable (signature, hash, version, expiry); nothing was changed."""


class UpdateFailed(MimamoriError, RuntimeError):
    """The update was acceptable but could not be installed or failed its self-test."""
