"""Dynamic-routing wiring for ncp: capsules of neurons routed by agreement.

``dynamic_routing`` groups neurons into primary capsules, fed by the inputs,
and output capsules, every primary capsule connected to every output one.
:class:`CapsuleRouting` runs a wired LTC or CfC on it with routing by
agreement (Sabour et al. 2017) at every step: coupling coefficients found
from the capsules' states scale the synapses between them, per sample.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ncp_core.hookspecs import hookimpl
from ncp_wiring_routing._wiring import DynamicRouting

__all__ = ["CapsuleRouting", "DynamicRouting", "ncp_register_wirings", "squash"]


def __getattr__(name: str) -> Any:
    # The routing module needs MLX; listing the wirings does not.
    if name in ("CapsuleRouting", "squash"):
        from ncp_wiring_routing import _routing

        return getattr(_routing, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@hookimpl
def ncp_register_wirings(register: Callable[..., Any]) -> None:
    register(DynamicRouting)
