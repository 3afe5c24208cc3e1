"""The ``language`` wiring for ncp, and the token encoder that feeds it.

Installing the distribution ``ncp-wiring-language`` makes the name available
to :func:`ncp.get_wiring` through the ``ncp`` entry point. The wiring is plain
NumPy; :class:`TokenEncoder` (an MLX module) is imported on first use.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ncp_core.hookspecs import hookimpl
from ncp_wiring_language.language import Language

if TYPE_CHECKING:
    from ncp_wiring_language.encoder import TokenEncoder, sinusoidal_positions

__all__ = ["Language", "TokenEncoder", "ncp_register_wirings", "sinusoidal_positions"]

__version__ = "0.1.0"

_LAZY = {"TokenEncoder", "sinusoidal_positions"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'ncp_wiring_language' has no attribute {name!r}")
    value = getattr(importlib.import_module("ncp_wiring_language.encoder"), name)
    globals()[name] = value
    return value


@hookimpl
def ncp_register_wirings(register: Callable[..., Any]) -> None:
    register(Language)
