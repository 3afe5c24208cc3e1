"""Numerical parity with the PyTorch reference, ncps 1.0.1.

Two sources of reference numbers, neither needing torch at test time:

- the golden values of the reference notes (section 1.8), for single cell
  steps with hand-set parameters;
- ``tests/reference/reference_fixture.npz``: 18 sequence models with the
  reference's parameters, inputs, outputs and gradients of
  ``mean(y**2) + 0.1 * sum(h_final)``.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten

from ncp_core.cells import (
    CfCCell,
    LTCCell,
    WiredCfCCell,
    from_layer_order,
    load_reference_state_dict,
    to_layer_order,
)
from ncp_core.cells.reference import backbone_ordinals, reference_key_to_ours
from ncp_core.classic import NCP
from ncp_core.rnn import LTC, CfC
from ncp_core.wiring import Wiring

FIXTURE = Path(__file__).parent / "reference" / "reference_fixture.npz"
X = mx.array([[0.5, -1.0]])
H0 = mx.array([[0.0, 0.1, -0.2]])


def lin(low: float, high: float, shape: tuple[int, ...]) -> mx.array:
    """The reference notes' ``Lin``: evenly spaced values, row-major."""
    size = int(np.prod(shape))
    return mx.array(np.linspace(low, high, size, dtype=np.float32).reshape(shape))


def assert_close(actual, expected, atol=1e-5, rtol=0.0) -> None:
    np.testing.assert_allclose(np.array(actual), np.asarray(expected), rtol, atol)


# -- golden values, LTCCell ----------------------------------------------------


def golden_ltc_cell(implicit: bool, kernel: str) -> LTCCell:
    wiring = Wiring(3, output_dim=2)
    wiring.build(2)
    wiring.adjacency = np.array([[1, -1, 0], [0, 1, 1], [-1, 0, 1]], np.int8)
    wiring.sensory_adjacency = np.array([[1, 0, -1], [-1, 1, 0]], np.int8)
    cell = LTCCell(wiring, None, implicit_param_constraints=implicit, kernel=kernel)
    cell.gleak = lin(0.2, 0.8, (3,))
    cell.vleak = lin(-0.1, 0.1, (3,))
    cell.cm = lin(0.4, 0.6, (3,))
    cell.sigma = lin(3, 8, (3, 3))
    cell.mu = lin(0.3, 0.8, (3, 3))
    cell.w = lin(0.1, 1.0, (3, 3))
    cell.sensory_sigma = lin(3, 8, (2, 3))
    cell.sensory_mu = lin(0.3, 0.8, (2, 3))
    cell.sensory_w = lin(0.1, 1.0, (2, 3))
    cell.input_w = mx.array([1.0, 0.5])
    cell.input_b = mx.array([0.1, -0.1])
    cell.output_w = mx.array([2.0, 3.0])
    cell.output_b = mx.array([0.5, -0.5])
    return cell


@pytest.mark.parametrize("kernel", ["dense", "sparse", "native"])
@pytest.mark.parametrize(
    ("implicit", "elapsed", "output", "state"),
    [
        (False, 1.0, [0.773648, -0.471110], [0.136824, 0.009630, -0.173968]),
        (False, 0.5, [0.661345, -0.356228], [0.080672, 0.047924, -0.179307]),
        (True, 1.0, [1.244950, -0.825468], [0.372475, -0.108489, -0.239857]),
        (True, 0.5, [1.005209, -0.537752], [0.252605, -0.012584, -0.224948]),
    ],
)
def test_ltc_cell_step_matches_reference_golden_values(
    kernel, implicit, elapsed, output, state
):
    cell = golden_ltc_cell(implicit, kernel)

    y, h = cell(X, H0, elapsed)

    assert_close(y, [output])
    assert_close(h, [state])


@pytest.mark.parametrize("kernel", ["dense", "sparse", "native"])
def test_ltc_cell_four_steps_match_reference_golden_sequence(kernel):
    cell = golden_ltc_cell(False, kernel)
    inputs = lin(-1, 1, (1, 4, 2))
    expected = [
        [0.519094, -0.434615],
        [0.525647, -0.541917],
        [0.550703, -0.550063],
        [0.338965, -0.260945],
    ]

    h = H0
    for t in range(4):
        y, h = cell(inputs[:, t], h, 1.0)
        assert_close(y, [expected[t]])

    assert_close(h, [[-0.080518, 0.079685, -0.188447]])


# -- golden values, CfCCell ----------------------------------------------------


def golden_cfc_cell(backbone: bool, mode: str) -> CfCCell:
    cell = CfCCell(2, 3, mode=mode, backbone_layers=int(backbone), backbone_units=4)
    features = 4 if backbone else 5
    if backbone:
        cell.backbone.layers[0].weight = lin(-0.6, 0.6, (4, 5))
        cell.backbone.layers[0].bias = lin(-0.1, 0.1, (4,))
    cell.ff1.weight = lin(-0.5, 0.5, (3, features))
    cell.ff1.bias = mx.array([0.1, 0.0, -0.1])
    if mode == "pure":
        cell.w_tau = mx.array([[0.1, -0.2, 0.3]])
        cell.A = mx.array([[1.0, 0.5, -0.5]])
        return cell
    cell.ff2.weight = lin(0.4, -0.4, (3, features))
    cell.ff2.bias = mx.array([0.0, 0.05, 0.1])
    cell.time_a.weight = lin(-0.3, 0.3, (3, features))
    cell.time_a.bias = mx.array([0.2, -0.2, 0.0])
    cell.time_b.weight = lin(0.2, -0.2, (3, features))
    cell.time_b.bias = mx.array([0.0, 0.1, -0.1])
    return cell


CFC_GOLDEN = [
    (False, "default", 1.0, [0.039854, 0.020504, -0.043609]),
    (False, "default", 0.3, [0.063921, 0.023797, -0.028687]),
    (False, "no_gate", 1.0, [0.199139, 0.010349, -0.193548]),
    (False, "no_gate", 0.3, [0.207553, 0.012845, -0.186615]),
    (False, "pure", 1.0, [0.802285, 0.508586, -0.588890]),
    (False, "pure", 0.3, [0.739702, 0.510026, -0.638712]),
    (True, "default", 1.0, [0.044701, 0.013912, -0.020034]),
    (True, "default", 0.3, [0.046018, 0.020734, -0.016400]),
    (True, "no_gate", 1.0, [0.081782, -0.016007, -0.110472]),
    (True, "no_gate", 0.3, [0.080971, -0.011825, -0.108746]),
    (True, "pure", 1.0, [0.942721, 0.524393, -0.559366]),
    (True, "pure", 0.3, [0.935584, 0.529333, -0.583933]),
]


@pytest.mark.parametrize(("backbone", "mode", "ts", "expected"), CFC_GOLDEN)
def test_cfc_cell_step_matches_reference_golden_values(backbone, mode, ts, expected):
    cell = golden_cfc_cell(backbone, mode)

    y, h = cell(X, H0, ts)

    assert_close(y, [expected])
    assert_close(h, [expected])


# -- golden values, WiredCfCCell ---------------------------------------------


@pytest.mark.parametrize(
    ("ts", "output", "state"),
    [
        (1.0, -0.129227, [-0.138793, 0.094266, -0.082465, 0.099085, -0.129227]),
        (0.3, -0.119621, [-0.135678, 0.093107, -0.084595, 0.103746, -0.119621]),
    ],
)
def test_wired_cfc_cell_step_matches_reference_golden_values(ts, output, state):
    wiring = NCP(2, 2, 1, 1, 1, 1, 1)
    wiring.build(2)
    adjacency = np.zeros((5, 5), np.int8)
    adjacency[3, 1], adjacency[4, 2], adjacency[1, 0] = 1, -1, 1
    sensory = np.zeros((2, 5), np.int8)
    sensory[0, 3], sensory[1, 4] = 1, -1
    wiring.adjacency, wiring.sensory_adjacency = adjacency, sensory
    cell = WiredCfCCell(None, wiring)
    for layer in cell.layers:
        shape = layer.ff1.weight.shape
        layer.ff1.weight = lin(-0.5, 0.5, shape)
        layer.ff2.weight = lin(0.4, -0.4, shape)
        layer.time_a.weight = lin(-0.3, 0.3, shape)
        layer.time_b.weight = lin(0.2, -0.2, shape)
        for head in (layer.ff1, layer.ff2, layer.time_a, layer.time_b):
            head.bias = lin(-0.1, 0.1, (shape[0],))
    masks = [np.array(layer._sparsity_mask) for layer in cell.layers]
    hx = from_layer_order(mx.array([[0.0, 0.1, -0.2, 0.3, -0.4]]), wiring)

    y, h = cell(mx.array([[0.5, -1.0]]), hx, ts)

    assert masks[0].tolist() == [[1, 0, 1, 1], [0, 1, 1, 1]]
    assert masks[2].tolist() == [[1, 0, 1]]
    assert_close(y, [[output]])
    assert_close(to_layer_order(h, wiring), [state])


# -- the reference fixture --------------------------------------------------------


@pytest.fixture(scope="module")
def fixture() -> dict[str, np.ndarray]:
    with np.load(FIXTURE, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def fixture_cases() -> list[str]:
    with np.load(FIXTURE, allow_pickle=False) as data:
        return json.loads(str(data["__fixture__/meta"]))["cases"]


def reference_wiring(data: dict[str, np.ndarray], case: str) -> Wiring:
    """A plain wiring carrying exactly the reference model's matrices."""
    adjacency = data[f"{case}/wiring.adjacency"]
    sensory = data[f"{case}/wiring.sensory_adjacency"]
    wiring = Wiring(adjacency.shape[0], int(data[f"{case}/wiring.output_dim"]))
    wiring.adjacency = adjacency.copy()
    wiring.build(sensory.shape[0])
    wiring.sensory_adjacency = sensory.copy()
    if f"{case}/wiring.layer0" in data:
        wiring.set_layers([data[f"{case}/wiring.layer{i}"] for i in range(3)])
    return wiring


def build_case(data, case: str, kernel: str):
    meta = json.loads(str(data[f"{case}/meta"]))
    args, kwargs = list(meta["args"]), dict(meta["kwargs"])
    if meta["wiring"] is not None:
        args.insert(1, reference_wiring(data, case))
    if meta["class"].endswith("LTC"):
        model = LTC(*args, kernel=kernel, **kwargs)
    else:
        model = CfC(*args, **kwargs)
    prefix = f"{case}/"
    state = {
        key[len(prefix) :]: value
        for key, value in data.items()
        if key.startswith(prefix)
        and key[len(prefix) :].split(".")[0] in ("rnn_cell", "lstm", "fc")
    }
    load_reference_state_dict(model, state)
    return model, meta


LTC_KERNELS = [
    (case, kernel)
    for case in fixture_cases()
    for kernel in (
        ("dense", "sparse", "native") if case.startswith("ltc") else ("auto",)
    )
]


@pytest.mark.parametrize(("case", "kernel"), LTC_KERNELS)
def test_model_matches_reference_fixture_outputs_and_gradients(fixture, case, kernel):
    model, meta = build_case(fixture, case, kernel)
    wired = case.startswith("wired")
    x = mx.array(fixture[f"{case}/x"])
    hx = None
    if f"{case}/h0" in fixture:
        h0 = mx.array(fixture[f"{case}/h0"])
        if wired:
            h0 = from_layer_order(h0, model.wiring)
        hx = (h0, mx.array(fixture[f"{case}/c0"])) if model.mixed_memory else h0
    timespans = fixture.get(f"{case}/timespans")

    def loss_fn(model):
        y, state = model(x, hx, timespans)
        h = state[0] if model.mixed_memory else state
        return mx.mean(y**2) + 0.1 * mx.sum(h), (y, state)

    (loss, (y, state)), grads = nn.value_and_grad(model, loss_fn)(model)

    h = state[0] if model.mixed_memory else state
    if wired:
        h = to_layer_order(h, model.wiring)
    assert_close(y, fixture[f"{case}/y"])
    assert_close(h, fixture[f"{case}/h_final"])
    if model.mixed_memory:
        assert_close(state[1], fixture[f"{case}/c_final"])
    assert_close(loss, fixture[f"{case}/loss"])
    ours = dict(tree_flatten(grads))
    trainable = meta["trainable"]
    assert len(ours) == len(trainable)
    for name in trainable:
        our_name = reference_key_to_ours(name, backbone_ordinals(trainable))
        np.testing.assert_allclose(
            np.array(ours[our_name]),
            fixture[f"{case}/grad/{name}"],
            rtol=1e-4,
            atol=1e-5,
            err_msg=f"gradient of {name}",
        )


def test_reference_backbone_names_map_to_our_layer_numbers():
    keys = [
        "rnn_cell.backbone.0.weight",
        "rnn_cell.backbone.2.weight",
        "rnn_cell.backbone.5.weight",
    ]
    ordinals = backbone_ordinals(keys)

    mapped = [reference_key_to_ours(key, ordinals) for key in keys]

    assert mapped == [
        "rnn_cell.backbone.layers.0.weight",
        "rnn_cell.backbone.layers.1.weight",
        "rnn_cell.backbone.layers.2.weight",
    ]
    assert reference_key_to_ours("rnn_cell.ff1.bias") == "rnn_cell.ff1.bias"
