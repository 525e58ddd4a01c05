"""Exceptions raised by hub code.

    HubError
     └── HubConfigError (+ ValueError)   hub.toml is missing or invalid

Wire-format problems raise ``edge.contract.ContractError`` (the shared contract module).
"""

from __future__ import annotations


class HubError(Exception):
    """Base of every error raised by mimamori hub code."""


class HubConfigError(HubError, ValueError):
    """hub.toml failed validation; ``problems`` has one line per field."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))
