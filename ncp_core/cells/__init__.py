"""MLX cells: LTC, CfC, wired CfC and the mixed-memory LSTM.

The synapse kernels behind :class:`LTCCell` live in
:mod:`ncp_core.cells.synapses`; the bridges to the PyTorch reference's
parameter names and state layouts in :mod:`ncp_core.cells.reference`.
"""

from ncp_core.cells.cfc import CfCCell
from ncp_core.cells.lstm import LSTMCell
from ncp_core.cells.ltc import LTCCell
from ncp_core.cells.reference import (
    from_layer_order,
    load_reference_state_dict,
    to_layer_order,
)
from ncp_core.cells.synapses import choose_kernel
from ncp_core.cells.wired_cfc import WiredCfCCell

__all__ = [
    "CfCCell",
    "LSTMCell",
    "LTCCell",
    "WiredCfCCell",
    "choose_kernel",
    "from_layer_order",
    "load_reference_state_dict",
    "to_layer_order",
]
