"""Attention wirings for ncp: ``attention`` and ``cross_attention``.

Installing the distribution ``ncp-wiring-attention`` makes both names
available to :func:`ncp.get_wiring` through the ``ncp`` entry point.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ncp_core.hookspecs import hookimpl
from ncp_wiring_attention.attention import Attention
from ncp_wiring_attention.cross_attention import CrossAttention

__all__ = ["Attention", "CrossAttention", "ncp_register_wirings"]

__version__ = "0.1.0"


@hookimpl
def ncp_register_wirings(register: Callable[..., Any]) -> None:
    register(Attention)
    register(CrossAttention)
