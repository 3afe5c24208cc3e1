"""A multi-scale signal-decomposition wiring for ncp.

Installing the distribution ``ncp-wiring-signal`` makes the wiring ``signal``
available to ``ncp.get_wiring``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ncp_core.hookspecs import hookimpl
from ncp_wiring_signal._signal import Signal

__all__ = ["Signal", "ncp_register_wirings"]

__version__ = "0.1.0"


@hookimpl
def ncp_register_wirings(register: Callable[..., Any]) -> None:
    register(Signal)
