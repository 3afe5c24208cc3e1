"""The wired CfC on the native CPU kernel (``cfc.c``), as an MLX function.

:func:`cfc_sequence` runs every layer of every step of a
:class:`~ncp_core.cells.WiredCfCCell` in one C call and differentiates it in
a second one; :func:`cfc_step` does the same for one step. The kernel reads
the parameters as the cell stores them (weights, biases, masks, gains) and
returns a gradient for each of them, so nothing is prepared in MLX and
nothing is cached between calls: a parameter changed in any way, in place
included, is seen by the next call.

Both return None where the kernel cannot run (mode ``"pure"``, a dtype other
than float32, inside ``mx.compile``/``mx.vmap``, a non-CPU device,
``NCP_NATIVE=0``, no C compiler); the caller then takes the MLX path.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field
from typing import Any

import mlx.core as mx
import numpy as np

from ncp_core import native

__all__ = ["available", "calls", "cfc_sequence", "cfc_step", "supports"]

_calls = {"forward": 0, "backward": 0}

_GATED = {"default": 1, "no_gate": 0}

# positions in the kernel's dims vector (see cfc.c, net_open)
_BATCH, _LENGTH, _SEQUENCES, _STEPS, _KEEP, _THREADS = 0, 1, 7, 8, 9, 10


def calls() -> dict[str, int]:
    """How many native forward and backward calls ran (for tests and reports)."""
    return dict(_calls)


_typed: list[Any] = []


def _library() -> Any:
    """The kernel library with its signatures declared, or None."""
    if _typed and native.enabled():
        return _typed[0]
    library: Any = native.load("cfc")
    if library is None:
        return None
    pointer, number = ctypes.c_void_p, ctypes.c_float
    library.ncp_cfc_forward.restype = ctypes.c_int
    library.ncp_cfc_forward.argtypes = [pointer, pointer, number] + [pointer] * 2
    library.ncp_cfc_backward.restype = ctypes.c_int
    library.ncp_cfc_backward.argtypes = [pointer, pointer, number] + [pointer] * 3
    _typed[:] = [library]
    return library


def available() -> bool:
    """Whether the native CfC kernel is enabled and builds here."""
    return _library() is not None


def supports(cell: Any) -> bool:
    """Whether eager CPU calls of a wired CfC cell run on the native kernel."""
    return cell.mode in _GATED and available()


@dataclass(frozen=True)
class _Plan:
    """What every kernel call of one cell shares."""

    names: tuple[str, ...]  # the layer modules
    perm: np.ndarray  # layer-order position → neuron id, int32
    dims: np.ndarray  # the kernel's dims with the per-call entries at 0
    units: int
    motor: int
    ones: np.ndarray = field(repr=False)  # time scales of a wiring without
    # the custom functions of calls with neither mask nor time scales, by
    # their dims and elapsed time: a cell stepped in a loop makes one
    functions: dict[tuple[Any, ...], Any] = field(default_factory=dict, repr=False)


def _plan(cell: Any) -> _Plan | None:
    """The cell's plan (made on first use), or None if its mode has no kernel."""
    attributes = vars(cell)
    plan = attributes.get("_native_cfc_plan")
    if plan is not None or cell.mode not in _GATED:
        return plan
    sizes = [int(ids.size) for ids in cell._layers.ids]
    dims = [0, 0, cell.sensory_size, cell.state_size, cell.motor_size, len(sizes)]
    dims += [_GATED[cell.mode], 0, 0, 0, 0, *sizes]
    plan = _Plan(
        names=tuple(f"layer_{i}" for i in range(len(sizes))),
        perm=np.concatenate(cell._layers.ids).astype(np.int32),
        dims=np.array(dims, np.int64),
        units=cell.state_size,
        motor=cell.motor_size,
        ones=np.ones(cell.state_size, np.float32),
    )
    attributes["_native_cfc_plan"] = plan
    return plan


def _parameters(cell: Any, plan: _Plan) -> list[mx.array]:
    """Per layer: ff1, ff2, time_a, time_b weights, their biases, mask, gains."""
    arrays = []
    for name in plan.names:
        layer = cell[name]
        heads = (layer["ff1"], layer["ff2"], layer["time_a"], layer["time_b"])
        arrays += [head["weight"] for head in heads]
        arrays += [head["bias"] for head in heads]
        arrays += [layer["_sparsity_mask"], layer["_synapse_gains"]]
    return arrays


def _time_scales(cell: Any, plan: _Plan) -> np.ndarray:
    """Per-neuron time scales in layer order."""
    if "_time_scales" not in cell:
        return plan.ones
    return np.concatenate([np.asarray(s, np.float32) for s in cell._time_scales])


def _addresses(arrays: list[Any], held: list[Any]) -> Any:
    """The addresses of float32 arrays' data (None stays NULL) as a C array,
    each C-contiguous (see :func:`ncp_core.native.address`); ``held`` keeps
    what they point into alive until the kernel returns."""
    addresses = [None if a is None else native.address(a, held) for a in arrays]
    return (ctypes.c_void_p * len(addresses))(*addresses)


def _function(
    plan: _Plan,
    dims: np.ndarray,
    elapsed: float,
    keep: np.ndarray | None,
    scales: np.ndarray,
) -> Any:
    """The custom function of one call: ``(x, h0, [elapsed], *parameters) →
    (y, h_final, hs, act)``, where ``hs``, ``act`` (every step's states and
    activations) are what the backward reads. A single step returns only
    ``(y, h_final)``, and its backward runs the step again: cheaper than
    handing two more arrays to MLX at every call."""
    library = _library()
    batch, length = int(dims[_BATCH]), int(dims[_LENGTH])
    steps = bool(dims[_STEPS])
    y_shape = (batch, length, plan.motor) if dims[_SEQUENCES] else (batch, plan.motor)
    h_shape = (batch, plan.units)
    shapes = [
        y_shape,
        h_shape,
        (batch, length, plan.units),
        (batch, length, (4 if steps else 3) * plan.units),
    ]
    kept = 4 if length > 1 else 2
    first_parameter = 3 if steps else 2
    # pointers that hold their arrays, so the addresses stay valid
    fixed = tuple(a.ctypes.data_as(ctypes.c_void_p) for a in (dims, plan.perm))

    def operands(arrays: Any) -> list[Any]:
        """The kernel's inputs (or their gradients) from the primals' order."""
        return [
            arrays[0],
            arrays[1],
            arrays[2] if steps else None,
            keep,
            scales,
            *arrays[first_parameter:],
        ]

    def forward(primals: Any) -> list[np.ndarray]:
        held: list[Any] = []
        outputs = [np.empty(shape, np.float32) for shape in shapes]
        status = library.ncp_cfc_forward(
            *fixed,
            elapsed,
            _addresses(operands(primals), held),
            _addresses(outputs, held),
        )
        if status != 0:
            raise MemoryError("the native CfC kernel could not allocate its buffers")
        return outputs

    def bare(*primals: mx.array) -> tuple[mx.array, ...]:
        outputs = forward(primals)
        _calls["forward"] += 1
        return tuple(mx.array(a) for a in outputs[:kept])

    wired_cfc = mx.custom_function(bare)

    @wired_cfc.jvp
    def wired_cfc_jvp(primals: Any, tangents: Any) -> Any:
        raise native.NativeUnsupported(
            "forward-mode derivatives (mx.jvp) do not go through the native CfC "
            "kernel; set NCP_NATIVE=0 for them"
        )

    # XXX: no second derivatives: the backward is a C call, not MLX operations
    # that MLX could differentiate again
    @wired_cfc.vjp
    def wired_cfc_vjp(primals: Any, cotangents: Any, outputs: Any) -> Any:
        held: list[Any] = []
        saved = outputs[2:] if kept == 4 else forward(primals)[2:]
        d_y, d_h = (
            np.zeros(shape, np.float32) if c is None else c
            for c, shape in zip(cotangents[:2], shapes, strict=False)
        )
        grads = [np.empty(a.shape, np.float32) for a in primals]
        targets = operands(grads)
        del targets[3:5]  # the mask and the time scales take no gradient
        status = library.ncp_cfc_backward(
            *fixed,
            elapsed,
            _addresses(operands(primals), held),
            _addresses([*saved, d_y, d_h], held),
            _addresses(targets, held),
        )
        if status != 0:
            raise MemoryError("the native CfC kernel could not allocate its buffers")
        _calls["backward"] += 1
        return tuple(mx.array(g) for g in grads)

    return wired_cfc, bare


def _run(
    cell: Any,
    x: mx.array,
    h0: mx.array,
    elapsed: float | mx.array,
    mask: mx.array | None,
    sequences: bool,
    length: int,
) -> tuple[mx.array, mx.array] | None:
    if _library() is None:
        return None
    plan = _plan(cell)
    if plan is None:
        return None
    primals = [x, h0]
    if isinstance(elapsed, mx.array):
        primals.append(elapsed)
    steps = len(primals) == 3
    primals += _parameters(cell, plan)
    float32 = mx.float32
    if not all(a.dtype == float32 for a in primals):
        return None
    if not native.can_run(*primals, *([] if mask is None else [mask])):
        return None

    batch = x.shape[0]
    dims = plan.dims.copy()
    dims[_BATCH], dims[_LENGTH] = batch, length
    dims[_SEQUENCES], dims[_STEPS] = sequences, steps
    dims[_KEEP] = mask is not None
    dims[_THREADS] = 1 if batch == 1 else native.num_threads()
    scalar = 0.0 if isinstance(elapsed, mx.array) else float(elapsed)
    scales = _time_scales(cell, plan)
    if mask is None and scales is plan.ones:
        key = (*dims.tolist(), scalar)
        function = plan.functions.get(key)
        if function is None:
            if len(plan.functions) >= 16:
                plan.functions.clear()
            function = plan.functions[key] = _function(plan, dims, scalar, None, scales)
    else:
        keep = None if mask is None else native.as_buffer(mask, np.uint8)
        function = _function(plan, dims, scalar, keep, scales)
    # under no_grad the forward runs bare: its results are plain arrays
    custom, bare = function
    y, h_final = (custom if native.grad_enabled() else bare)(*primals)[:2]
    return y, h_final


def cfc_sequence(
    cell: Any,
    x: mx.array,
    h0: mx.array,
    elapsed: float | mx.array,
    mask: mx.array | None,
    return_sequences: bool,
) -> tuple[mx.array, mx.array] | None:
    """A wired CfC over a sequence on the native kernel, or None if it cannot run.

    Args:
        cell (WiredCfCCell): The cell; its mode must be default or no_gate.
        x: Inputs ``(B, L, S)``.
        h0: Start state ``(B, N)``, by neuron id.
        elapsed: A number, or ``(B, L, 1)`` per sample and step.
        mask: ``(B, L)`` bool, False where a step keeps the state; or None.
        return_sequences (bool): Motor outputs of every step ``(B, L, M)``
            rather than of the last ``(B, M)``.

    Returns:
        ``(y, h_final)``: the motor outputs and the final state ``(B, N)``.
    """
    return _run(cell, x, h0, elapsed, mask, return_sequences, x.shape[1])


def cfc_step(
    cell: Any, x: mx.array, h: mx.array, elapsed: float | mx.array
) -> tuple[mx.array, mx.array] | None:
    """One wired CfC step ``(B, S), (B, N) → ((B, M), (B, N))`` on the native
    kernel, or None if it cannot run; ``elapsed`` a number or ``(B, 1)``."""
    return _run(cell, x, h, elapsed, None, False, 1)
