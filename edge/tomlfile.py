"""One TOML config file into a pydantic model, with errors that name the file and the field.

Used by the device config (``edge.config``) and, as the one module besides the contract
that the hub imports from the device side, by the hub's (``hub.config``).
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from mimamori.edge.contract import format_validation

M = TypeVar("M", bound=BaseModel)
#: the caller's error class, built from (source, one line per problem)
Refusal = Callable[[str, list[str]], Exception]


def validate(model: type[M], data: dict[str, Any], source: str, error: Refusal) -> M:
    """``data`` as ``model``; raises ``error(source, ["a.b: message (got VALUE)", ...])``."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise error(source, format_validation(e).split("; ")) from None


def load_toml(path: Path, model: type[M], error: Refusal) -> M:
    """Read and validate ``path``; a missing, unreadable or malformed file raises ``error``."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(str(path), ["file not found"]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise error(str(path), [f"cannot read: {e}"]) from None
    except tomllib.TOMLDecodeError as e:
        raise error(str(path), [f"not valid TOML: {e}"]) from None
    return validate(model, data, str(path), error)
