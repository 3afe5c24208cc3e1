"""Multi-time-scale and hierarchical wirings for ncp.

Installing the distribution ``ncp-wiring-multiscale`` makes the wirings
``multiscale`` and ``hierarchical`` available to ``ncp.get_wiring``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ncp_core.hookspecs import hookimpl
from ncp_wiring_multiscale._hierarchical import Hierarchical
from ncp_wiring_multiscale._multiscale import MultiScale

__all__ = ["Hierarchical", "MultiScale", "ncp_register_wirings"]

__version__ = "0.1.0"


@hookimpl
def ncp_register_wirings(register: Callable[..., Any]) -> None:
    register(MultiScale)
    register(Hierarchical)
