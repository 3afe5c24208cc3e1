"""ncp_core: the Wiring protocol, the plugin system and the MLX cell runtime.

Public names are loaded on first use, so ``import ncp_core`` stays cheap and
nothing touches MLX or the installed plugins until it is needed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # wirings
    "Wiring": "ncp_core.wiring",
    "SENSORY": "ncp_core.wiring",
    "FullyConnected": "ncp_core.classic",
    "Random": "ncp_core.classic",
    "NCP": "ncp_core.classic",
    "AutoNCP": "ncp_core.classic",
    # plugins
    "hookimpl": "ncp_core.hookspecs",
    "get_wiring": "ncp_core.plugins",
    "list_wirings": "ncp_core.plugins",
    "register_wiring": "ncp_core.plugins",
    "wiring_from_config": "ncp_core.plugins",
    "wiring_record": "ncp_core.plugins",
    "wiring_info": "ncp_core.plugins",
    "list_plugins": "ncp_core.plugins",
    "list_datasets": "ncp_core.plugins",
    "register_dataset": "ncp_core.plugins",
    "load_dataset": "ncp_core.plugins",
    # cells and sequence modules
    "LTCCell": "ncp_core.cells",
    "CfCCell": "ncp_core.cells",
    "WiredCfCCell": "ncp_core.cells",
    "LSTMCell": "ncp_core.cells",
    "LTC": "ncp_core.rnn",
    "CfC": "ncp_core.rnn",
    "model_from_config": "ncp_core.rnn",
    "make_train_step": "ncp_core.training",
    "no_grad": "ncp_core.native",
    # errors
    "NCPError": "ncp_core.errors",
    "WiringError": "ncp_core.errors",
    "PluginError": "ncp_core.errors",
    "PluginConflictError": "ncp_core.errors",
    "UnknownWiringError": "ncp_core.errors",
    "DataError": "ncp_core.errors",
    "CheckpointError": "ncp_core.errors",
    "ModelError": "ncp_core.errors",
    "NCPWarning": "ncp_core.errors",
    "NCPPluginWarning": "ncp_core.errors",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:
    from ncp_core.cells import CfCCell, LSTMCell, LTCCell, WiredCfCCell
    from ncp_core.classic import NCP, AutoNCP, FullyConnected, Random
    from ncp_core.errors import (
        CheckpointError,
        DataError,
        ModelError,
        NCPError,
        NCPPluginWarning,
        NCPWarning,
        PluginConflictError,
        PluginError,
        UnknownWiringError,
        WiringError,
    )
    from ncp_core.hookspecs import hookimpl
    from ncp_core.native import no_grad
    from ncp_core.plugins import (
        get_wiring,
        list_datasets,
        list_plugins,
        list_wirings,
        load_dataset,
        register_dataset,
        register_wiring,
        wiring_from_config,
        wiring_info,
        wiring_record,
    )
    from ncp_core.rnn import LTC, CfC
    from ncp_core.wiring import SENSORY, Wiring


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ncp_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
