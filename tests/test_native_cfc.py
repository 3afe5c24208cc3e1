"""The native wired-CfC kernel gives the MLX path's values and gradients."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten

from ncp_core import native
from ncp_core.cells import WiredCfCCell
from ncp_core.classic import NCP, AutoNCP
from ncp_core.native import cfc as native_cfc
from ncp_core.rnn import CfC
from ncp_core.wiring import Wiring

pytestmark = pytest.mark.skipif(
    not native_cfc.available(),
    reason="the native CfC kernel does not build here (no C compiler?)",
)

TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}


# -- wirings ----------------------------------------------------------------------


def auto_ncp() -> Wiring:
    return AutoNCP(14, 3, seed=5)


def classic_ncp() -> Wiring:
    return NCP(5, 4, 2, 3, 3, 2, 3, seed=7)


def scattered() -> Wiring:
    """Layers that are neither id ranges nor ascending; the motor layer is
    ``[1, 0]``, so the outputs are gathered from the state."""
    wiring = Wiring(11, 2, seed=3)
    wiring.set_layers([[9, 2, 6, 4, 10], [7, 3, 5, 8], [1, 0]])
    wiring.build(4)
    rng = np.random.default_rng(11)
    wiring.adjacency[:] = rng.choice([-1, 0, 1], size=(11, 11))
    assert wiring.sensory_adjacency is not None
    wiring.sensory_adjacency[:] = rng.choice([-1, 0, 1], size=(4, 11))
    return wiring


def time_scaled() -> Wiring:
    wiring = AutoNCP(12, 2, seed=2)
    wiring.set_time_scales(np.linspace(0.4, 3.0, 12))
    return wiring


WIRINGS = {
    "auto_ncp": auto_ncp,
    "ncp": classic_ncp,
    "scattered": scattered,
    "time_scaled": time_scaled,
}


# -- running both paths -------------------------------------------------------------


def on_both_paths(
    monkeypatch: pytest.MonkeyPatch, compute: Callable[[], dict[str, Any]]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``compute()`` on the MLX path (``NCP_NATIVE=0``), then on the native
    kernel; fails unless the native forward and backward both ran."""
    with monkeypatch.context() as patch:
        patch.setenv("NCP_NATIVE", "0")
        before = native_cfc.calls()
        reference = compute()
        assert native_cfc.calls() == before
    before = native_cfc.calls()
    result = compute()
    after = native_cfc.calls()
    assert after["forward"] > before["forward"]
    assert after["backward"] > before["backward"]
    return reference, result


def assert_same(reference: dict[str, Any], result: dict[str, Any]) -> None:
    assert reference.keys() == result.keys()
    for key in reference:
        np.testing.assert_allclose(
            np.array(result[key]), np.array(reference[key]), err_msg=key, **TOLERANCE
        )


def weights_like(shape: tuple[int, ...], seed: int) -> mx.array:
    return mx.array(np.random.default_rng(seed).normal(size=shape).astype(np.float32))


def sequence_results(
    model: CfC,
    x: mx.array,
    hx: mx.array | None = None,
    timespans: mx.array | None = None,
    mask: mx.array | None = None,
) -> Callable[[], dict[str, Any]]:
    """A function giving the readout, the final state and the gradient of a
    loss that weighs each of them differently, for every parameter and for
    ``x``, the initial state and the timespans (those given)."""
    inputs = {"x": x}
    if hx is not None:
        inputs["hx"] = hx
    if timespans is not None:
        inputs["timespans"] = timespans

    def compute() -> dict[str, Any]:
        parameters = model.trainable_parameters()

        def loss(parameters: Any, inputs: dict[str, mx.array]) -> Any:
            model.update(parameters)
            y, h = model(inputs["x"], inputs.get("hx"), inputs.get("timespans"), mask)
            value = (y * weights_like(y.shape, 1)).sum()
            value = value + (h * weights_like(h.shape, 2)).sum()
            return value, y, h

        (_, y, h), (d_parameters, d_inputs) = mx.value_and_grad(loss, argnums=(0, 1))(
            parameters, inputs
        )
        model.update(parameters)
        out = {"y": y, "h": h}
        out.update({f"d_{k}": v for k, v in tree_flatten(d_parameters)})
        out.update({f"d_{k}": v for k, v in d_inputs.items()})
        return out

    return compute


def model_for(wiring: Wiring, inputs: int, **options: Any) -> CfC:
    mx.random.seed(0)
    return CfC(inputs, wiring, **options)


# -- sequences ------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(WIRINGS))
@pytest.mark.parametrize("mode", ["default", "no_gate"])
def test_native_sequence_matches_the_mlx_path(monkeypatch, name, mode):
    wiring = WIRINGS[name]()
    inputs = wiring.input_dim or 3
    model = model_for(wiring, inputs, mode=mode)
    x = mx.random.normal((5, 6, inputs))
    hx = mx.random.normal((5, wiring.units)) * 0.5

    reference, result = on_both_paths(monkeypatch, sequence_results(model, x, hx))

    assert_same(reference, result)
    assert result["y"].shape == (5, 6, wiring.output_dim)
    assert float(mx.abs(result["d_hx"]).sum()) > 0


@pytest.mark.parametrize("intra_layer", ["dense", "wiring"])
@pytest.mark.parametrize("batch", [1, 5])
def test_native_sequence_matches_for_each_recurrence_and_batch(
    monkeypatch, intra_layer, batch
):
    model = model_for(auto_ncp(), 3, intra_layer=intra_layer)
    x = mx.random.normal((batch, 7, 3))

    reference, result = on_both_paths(monkeypatch, sequence_results(model, x))

    assert_same(reference, result)


def test_per_sample_timespans_and_a_padding_mask_match_the_mlx_path(monkeypatch):
    model = model_for(time_scaled(), 3)
    x = mx.random.normal((5, 6, 3))
    timespans = mx.random.uniform(0.2, 2.0, (5, 6))
    mask = mx.array(np.arange(6)[None, :] < np.array([6, 4, 1, 6, 3])[:, None])

    reference, result = on_both_paths(
        monkeypatch, sequence_results(model, x, timespans=timespans, mask=mask)
    )

    assert_same(reference, result)
    # a padded step has no effect on anything: no gradient reaches it
    np.testing.assert_array_equal(np.array(result["d_x"])[1, 4:], 0.0)
    np.testing.assert_array_equal(np.array(result["d_timespans"])[2, 1:], 0.0)
    assert float(mx.abs(result["d_timespans"][:, 0]).min()) > 0


def test_padded_steps_keep_the_state(monkeypatch):
    model = model_for(auto_ncp(), 3)
    x = mx.random.normal((2, 5, 3))
    mask = mx.array([[True] * 5, [True, True, False, False, False]])

    y, h = model(x, mask=mask)
    _, h_short = model(x[1:, :2])

    np.testing.assert_allclose(np.array(h[1]), np.array(h_short[0]), **TOLERANCE)
    np.testing.assert_allclose(np.array(y[1, 4]), np.array(y[1, 1]), **TOLERANCE)


def test_synapse_gains_weigh_the_native_synapses(monkeypatch):
    wiring = auto_ncp()
    model = model_for(wiring, 3)
    rng = np.random.default_rng(4)
    model.set_synapse_gains(
        rng.uniform(0.5, 2.0, (14, 14)), rng.uniform(0.5, 2.0, (3, 14))
    )
    x = mx.random.normal((3, 5, 3))

    reference, result = on_both_paths(monkeypatch, sequence_results(model, x))

    assert_same(reference, result)
    plain = model_for(auto_ncp(), 3)
    assert not np.allclose(np.array(plain(x)[0]), np.array(result["y"]), atol=1e-3)


def test_new_wiring_masks_take_effect_at_the_next_call(monkeypatch):
    wiring = auto_ncp()
    model = model_for(wiring, 3, intra_layer="wiring")
    x = mx.random.normal((3, 5, 3))
    before, _ = model(x)
    pruned = wiring.adjacency.copy()
    pruned[wiring.groups["command"], :] = 0

    model.set_wiring_masks(adjacency=pruned)

    reference, result = on_both_paths(monkeypatch, sequence_results(model, x))
    assert_same(reference, result)
    assert not np.allclose(np.array(result["y"]), np.array(before), atol=1e-3)


def test_gradients_reach_the_masks_and_gains(monkeypatch):
    model = model_for(auto_ncp(), 3)
    cell = model.rnn_cell
    x = mx.random.normal((3, 4, 3))
    layers = cell.layers
    constants = [
        a for layer in layers for a in (layer._sparsity_mask, layer._synapse_gains)
    ]

    def compute() -> dict[str, Any]:
        def loss(constants: list[mx.array]) -> mx.array:
            for index, layer in enumerate(layers):
                layer._sparsity_mask = constants[2 * index]
                layer._synapse_gains = constants[2 * index + 1]
            y, _ = model(x)
            return (y * weights_like(y.shape, 3)).sum()

        grads = mx.grad(loss)(constants)
        loss(constants)
        return {f"d_{i}": g for i, g in enumerate(grads)}

    reference, result = on_both_paths(monkeypatch, compute)

    assert_same(reference, result)
    assert float(mx.abs(result["d_1"]).sum()) > 0


def test_last_output_projection_and_time_major_input_match(monkeypatch):
    model = model_for(scattered(), 4, return_sequences=False, proj_size=3)
    model_t = model_for(scattered(), 4, return_sequences=False, batch_first=False)
    x = mx.random.normal((5, 6, 4))

    reference, result = on_both_paths(monkeypatch, sequence_results(model, x))
    assert_same(reference, result)
    assert result["y"].shape == (5, 3)

    reference, result = on_both_paths(
        monkeypatch, sequence_results(model_t, x.transpose(1, 0, 2))
    )
    assert_same(reference, result)
    assert result["y"].shape == (5, 2)


def test_unbatched_series_runs_natively(monkeypatch):
    model = model_for(auto_ncp(), 3)
    x = mx.random.normal((6, 3))

    reference, result = on_both_paths(monkeypatch, sequence_results(model, x))

    assert_same(reference, result)
    assert result["y"].shape == (6, 3) and result["h"].shape == (14,)


def test_results_do_not_depend_on_the_number_of_threads(monkeypatch):
    model = model_for(auto_ncp(), 3)
    x = mx.random.normal((7, 5, 3))
    compute = sequence_results(model, x)
    monkeypatch.setenv("NCP_NUM_THREADS", "1")
    single = compute()

    monkeypatch.setenv("NCP_NUM_THREADS", "3")
    reference, threaded = on_both_paths(monkeypatch, compute)

    for key in single:
        np.testing.assert_array_equal(
            np.array(threaded[key]), np.array(single[key]), err_msg=key
        )
    assert_same(reference, threaded)


def test_inside_mx_compile_the_mlx_path_runs_with_the_same_values():
    model = model_for(auto_ncp(), 3)
    x = mx.random.normal((4, 5, 3))

    def loss(model: CfC, x: mx.array) -> mx.array:
        y, h = model(x)
        return (y * weights_like(y.shape, 1)).sum() + (h * h).sum()

    loss_and_grad = nn.value_and_grad(model, loss)
    eager_loss, eager_grads = loss_and_grad(model, x)
    before = native_cfc.calls()

    compiled = mx.compile(lambda x: loss_and_grad(model, x), inputs=model.state)
    compiled_loss, compiled_grads = compiled(x)
    mx.eval(compiled_loss, compiled_grads)

    assert native_cfc.calls() == before
    np.testing.assert_allclose(np.array(compiled_loss), np.array(eager_loss), rtol=1e-5)
    for (key, a), (_, b) in zip(
        tree_flatten(compiled_grads), tree_flatten(eager_grads), strict=True
    ):
        np.testing.assert_allclose(np.array(a), np.array(b), err_msg=key, **TOLERANCE)


@pytest.mark.parametrize(
    "options",
    [{"mode": "pure"}, {"mixed_memory": True}],
    ids=["pure", "mixed_memory"],
)
def test_models_without_a_kernel_use_the_mlx_path(options):
    model = model_for(auto_ncp(), 3, **options)
    x = mx.random.normal((2, 4, 3))
    before = native_cfc.calls()

    y, _ = model(x)

    assert native_cfc.calls() == before
    assert y.shape == (2, 4, 3) and bool(mx.all(mx.isfinite(y)))


def test_half_precision_model_uses_the_mlx_path():
    model = model_for(auto_ncp(), 3)
    model.set_dtype(mx.float16)
    before = native_cfc.calls()

    y, _ = model(mx.random.normal((2, 4, 3)).astype(mx.float16))

    assert native_cfc.calls() == before
    assert y.shape == (2, 4, 3) and bool(mx.all(mx.isfinite(y)))


def test_native_training_step_lowers_the_loss():
    import mlx.optimizers as optim

    from ncp_core.training import make_train_step, uses_native

    model = model_for(auto_ncp(), 3)
    x = mx.random.normal((8, 10, 3))
    target = mx.sin(mx.cumsum(x, axis=1))[..., :3]

    def mse(model: CfC, x: mx.array, y: mx.array) -> mx.array:
        return mx.mean((model(x)[0] - y) ** 2)

    assert uses_native(model)
    step = make_train_step(model, optim.Adam(learning_rate=0.02), mse)
    before = native_cfc.calls()
    losses = [float(step(x, target)) for _ in range(30)]

    assert native_cfc.calls()["backward"] >= before["backward"] + 30
    assert losses[-1] < 0.7 * losses[0]


# -- one cell step ------------------------------------------------------------------


def step_results(
    cell: WiredCfCCell, x: mx.array, h: mx.array, ts: Any
) -> Callable[[], dict[str, Any]]:
    def compute() -> dict[str, Any]:
        parameters = cell.trainable_parameters()
        arrays = {"x": x, "h": h}
        if isinstance(ts, mx.array):
            arrays["ts"] = ts

        def loss(parameters: Any, arrays: dict[str, mx.array]) -> Any:
            cell.update(parameters)
            y, state = cell(arrays["x"], arrays["h"], arrays.get("ts", ts))
            value = (y * weights_like(y.shape, 5)).sum()
            return value + (state * weights_like(state.shape, 6)).sum(), y, state

        (_, y, state), (d_parameters, d_arrays) = mx.value_and_grad(
            loss, argnums=(0, 1)
        )(parameters, arrays)
        cell.update(parameters)
        out = {"y": y, "state": state}
        out.update({f"d_{k}": v for k, v in tree_flatten(d_parameters)})
        out.update({f"d_{k}": v for k, v in d_arrays.items()})
        return out

    return compute


@pytest.mark.parametrize("name", ["auto_ncp", "scattered", "time_scaled"])
@pytest.mark.parametrize("batch", [1, 3])
def test_native_cell_step_matches_the_mlx_path(monkeypatch, name, batch):
    wiring = WIRINGS[name]()
    inputs = wiring.input_dim or 3
    mx.random.seed(0)
    cell = WiredCfCCell(inputs, wiring)
    x = mx.random.normal((batch, inputs))
    h = mx.random.normal((batch, wiring.units)) * 0.5

    for ts in (0.7, mx.random.uniform(0.5, 1.5, (batch,))):
        reference, result = on_both_paths(monkeypatch, step_results(cell, x, h, ts))
        assert_same(reference, result)
        assert result["y"].shape == (batch, wiring.output_dim)


def test_cell_step_without_gradient_runs_one_native_forward():
    cell = WiredCfCCell(3, AutoNCP(19, 4))
    x, h = mx.random.normal((1, 3)), mx.zeros((1, 19))
    before = native_cfc.calls()

    y, state = cell(x, h)
    again_y, again_state = cell(x, state)
    mx.eval(y, state, again_y, again_state)

    after = native_cfc.calls()
    assert after["forward"] == before["forward"] + 2
    assert after["backward"] == before["backward"]
    np.testing.assert_allclose(np.array(state[:, :4]), np.array(y), **TOLERANCE)
    assert not np.allclose(np.array(again_state), np.array(state))


def test_cell_step_sees_parameter_changes_made_in_place():
    cell = WiredCfCCell(3, AutoNCP(12, 2))
    x, h = mx.random.normal((1, 3)), mx.random.normal((1, 12))
    _, before = cell(x, h)

    cell.layer_0.ff1.bias[0] = 5.0
    cell.layer_1.time_b.weight[:] = 0.0
    _, after = cell(x, h)

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NCP_NATIVE", "0")
        _, expected = cell(x, h)
    np.testing.assert_allclose(np.array(after), np.array(expected), **TOLERANCE)
    assert not np.allclose(np.array(after), np.array(before))


def test_forward_mode_derivatives_are_refused_with_a_way_out():
    model = CfC(3, AutoNCP(12, 3, seed=2))
    x = mx.ones((2, 4, 3))
    with pytest.raises(native.NativeUnsupported, match="NCP_NATIVE=0"):
        mx.jvp(lambda x: model(x)[0], (x,), (mx.ones_like(x),))
