"""Adaptive wiring for ncp: synapses pruned and regrown while the model trains.

``adaptive`` starts from its own random sparse graph or from any registered
wiring and moves a fraction of its synapses at each update, keeping their
number: the weakest are pruned, the most promising absent ones grown (SET,
RigL). :class:`AdaptiveConnectivity` does the updates during training, in
:func:`ncp_core.train.fit` (``ncp train --adapt-every N --adapt-fraction F``)
or in a loop of your own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ncp_core.hookspecs import hookimpl
from ncp_wiring_adaptive._wiring import Adaptive

__all__ = ["Adaptive", "AdaptiveConnectivity", "ncp_register_wirings"]


def __getattr__(name: str) -> Any:
    # The callback needs MLX and the training loop; `ncp wirings` does not.
    if name == "AdaptiveConnectivity":
        from ncp_wiring_adaptive._training import AdaptiveConnectivity

        return AdaptiveConnectivity
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@hookimpl
def ncp_register_wirings(register: Callable[..., Any]) -> None:
    register(Adaptive)
