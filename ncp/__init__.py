"""ncp: Neural Circuit Policies on MLX.

The public namespace. Everything here is re-exported from :mod:`ncp_core`::

    import ncp

    wiring = ncp.AutoNCP(32, 4)
    model = ncp.CfC(8, wiring)
"""

from __future__ import annotations

from typing import Any

import ncp_core
from ncp_core import __all__, __version__  # noqa: F401


def __getattr__(name: str) -> Any:
    if name in ncp_core._EXPORTS:
        return getattr(ncp_core, name)
    raise AttributeError(f"module 'ncp' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
