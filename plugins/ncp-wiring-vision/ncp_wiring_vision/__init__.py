"""The ``vision`` wiring for ncp: feature maps with local receptive fields.

Installing the distribution ``ncp-wiring-vision`` makes the name available
to :func:`ncp.get_wiring` through the ``ncp`` entry point.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ncp_core.hookspecs import hookimpl
from ncp_wiring_vision.vision import Vision, window_pairs

__all__ = ["Vision", "ncp_register_wirings", "window_pairs"]

__version__ = "0.1.0"


@hookimpl
def ncp_register_wirings(register: Callable[..., Any]) -> None:
    register(Vision)
