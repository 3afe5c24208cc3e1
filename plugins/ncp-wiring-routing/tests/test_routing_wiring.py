"""The dynamic-routing wiring and routing by agreement between its capsules."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
import pytest
from mlx.utils import tree_flatten
from ncp_wiring_routing import CapsuleRouting, DynamicRouting, squash

from ncp_core import plugins
from ncp_core.data.bundled import load_bundled
from ncp_core.errors import WiringError
from ncp_core.rnn import LTC, CfC
from ncp_core.training import make_train_step


def docs_example(page: str) -> dict:
    """Run the first python block of ``docs/wirings/<page>.md``; its namespace."""
    root = Path(__file__).resolve().parent
    while not (
        (root / "pyproject.toml").is_file()
        and 'name = "ncp-core"' in (root / "pyproject.toml").read_text()
    ):
        if root.parent == root:
            raise FileNotFoundError("no ncp-core pyproject.toml above this test")
        root = root.parent
    text = (root / "docs" / "wirings" / f"{page}.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.DOTALL)
    assert code is not None, f"docs/wirings/{page}.md has no python block"
    namespace: dict = {}
    exec(compile(code.group(1), f"{page}.md", "exec"), namespace)
    return namespace


def routed(cell: str, wiring: DynamicRouting, **kwargs) -> CapsuleRouting:
    mx.random.seed(0)
    rnn = (
        LTC(wiring.input_dim, wiring, ode_unfolds=3)
        if cell == "ltc"
        else CfC(wiring.input_dim, wiring)
    )
    return CapsuleRouting(rnn, **kwargs)


class Classifier(nn.Module):
    """Routed network, then a linear head on the last step's outputs."""

    def __init__(self, routing: CapsuleRouting, classes: int) -> None:
        super().__init__()
        self.routing = routing
        self.head = nn.Linear(routing.wiring.output_dim, classes)

    def __call__(self, x):
        return self.head(self.routing(x)[0][:, -1])


def cross_entropy(model, x, y):
    return nn.losses.cross_entropy(model(x), y, reduction="mean")


@pytest.fixture(scope="module")
def italy():
    """32 standardised ItalyPowerDemand series and their class ids."""
    data = load_bundled("italy_power_demand")
    x = data.X_train[:32].astype(np.float32)
    x = (x - x.mean()) / x.std()
    classes = sorted(set(data.y_train.tolist()))
    y = np.array([classes.index(v) for v in data.y_train[:32]], np.int32)
    return mx.array(x), mx.array(y)


# -- structure ---------------------------------------------------------------


def test_capsules_are_consecutive_id_blocks_after_the_outputs():
    wiring = DynamicRouting(3, 4, output_capsules=2, output_capsule_dim=2)
    assert (wiring.units, wiring.output_dim) == (16, 4)
    assert wiring.output_capsule_ids.tolist() == [[0, 1], [2, 3]]
    assert wiring.primary_capsule_ids.tolist() == [
        [4, 5, 6, 7],
        [8, 9, 10, 11],
        [12, 13, 14, 15],
    ]
    assert list(wiring.groups) == [
        "output_0",
        "output_1",
        "primary_0",
        "primary_1",
        "primary_2",
    ]
    assert [ids.tolist() for ids in wiring.layers] == [list(range(4, 16)), [0, 1, 2, 3]]


def test_every_primary_capsule_reaches_every_output_capsule_densely():
    wiring = DynamicRouting(3, 4, output_capsules=2, output_capsule_dim=2).build(5)
    present = wiring.adjacency != 0
    assert present[4:, :4].all()
    assert np.array_equal(present & ~wiring.routed_synapses(), _within_capsules(wiring))
    assert wiring.synapse_count == 12 * 4 + 3 * (4 * 3) + 2 * (2 * 1)
    sensory = wiring.sensory_adjacency != 0
    assert sensory[:, 4:].all() and not sensory[:, :4].any()
    assert wiring.validate() == []


def _within_capsules(wiring: DynamicRouting) -> np.ndarray:
    within = np.zeros((wiring.units, wiring.units), bool)
    for ids in [*wiring.primary_capsule_ids, *wiring.output_capsule_ids]:
        within[np.ix_(ids, ids)] = True
    np.fill_diagonal(within, False)
    return within


def test_capsule_recurrence_can_be_switched_off():
    wiring = DynamicRouting(2, 3, capsule_recurrence=False)
    assert np.array_equal(wiring.adjacency != 0, wiring.routed_synapses())


def test_sensory_density_sets_the_inputs_per_primary_neuron():
    wiring = DynamicRouting(2, 3, sensory_density=0.5).build(6)
    assert (wiring.sensory_adjacency != 0).sum(axis=0).tolist() == [0] * 6 + [3] * 6


def test_dynamic_routing_round_trips_through_json():
    wiring = DynamicRouting(3, 2, output_capsules=3, routing_iterations=1, seed=4)
    wiring.build(2)
    restored = DynamicRouting.from_config(json.loads(json.dumps(wiring.config())))
    assert restored == wiring
    assert restored.routing_iterations == 1
    record = json.loads(json.dumps(plugins.wiring_record(wiring)))
    assert plugins.wiring_from_config(record) == wiring


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"num_capsules": 0, "capsule_dim": 2}, "num_capsules must be at least 1"),
        ({"num_capsules": 2, "capsule_dim": -1}, "capsule_dim must be at least 1"),
        (
            {"num_capsules": 2, "capsule_dim": 2, "output_capsules": 0},
            "output_capsules must be at least 1",
        ),
        (
            {"num_capsules": 2, "capsule_dim": 2, "routing_iterations": -1},
            "routing_iterations must be at least 0",
        ),
        (
            {"num_capsules": 2, "capsule_dim": 2, "sensory_density": 0.0},
            "without inputs",
        ),
        (
            {"num_capsules": 2, "capsule_dim": 2, "sensory_density": 1.5},
            "sensory_density must be a number in [0.0, 1.0]",
        ),
    ],
)
def test_dynamic_routing_rejects_bad_parameters_with_a_clear_error(params, message):
    with pytest.raises(WiringError, match=re.escape(message)):
        DynamicRouting(**params)


def test_routing_needs_a_model_on_a_dynamic_routing_wiring():
    with pytest.raises(WiringError, match="'dynamic_routing' wiring"):
        CapsuleRouting(CfC(2, plugins.get_wiring("auto_ncp", units=8, output_size=1)))


def test_dynamic_routing_is_found_through_its_entry_point():
    info = plugins.wiring_info("dynamic_routing")
    assert info.cls is DynamicRouting
    assert info.distribution == "ncp-wiring-routing"


# -- routing -----------------------------------------------------------------


def test_squash_keeps_direction_and_bounds_length_below_one():
    s = mx.array([[3.0, 4.0], [0.3, 0.4]])
    v = np.array(squash(s))
    assert np.allclose(np.linalg.norm(v, axis=1), [25 / 26 * 1.0, 0.25 / 1.25])
    assert np.allclose(v[0] / np.linalg.norm(v[0]), [0.6, 0.8])


def test_coupling_coefficients_are_a_distribution_over_output_capsules():
    wiring = DynamicRouting(4, 3, output_capsules=3).build(2)
    routing = routed("cfc", wiring)
    h = mx.random.normal((5, wiring.units), key=mx.random.key(1)) * 2.0
    c = np.array(routing.coefficients(h))
    assert c.shape == (5, 4, 3)
    assert (c >= 0).all()
    assert np.allclose(c.sum(axis=2), 1.0, atol=1e-6)
    assert not np.allclose(c, 1 / 3)  # the routing did something


def test_agreement_raises_the_coupling():
    wiring = DynamicRouting(2, 2, output_capsules=2).build(1)
    routing = routed("cfc", wiring)
    # Capsule i predicts +u_i for output 0 and -u_i for output 1; output 0's
    # state points where the predictions do, so they agree with output 0.
    eye = np.eye(2, dtype=np.float32)
    routing.prediction = mx.array(np.stack([np.stack([eye, -eye])] * 2))
    h = np.zeros((1, wiring.units), np.float32)
    h[0, wiring.primary_capsule_ids[0]] = [1.0, 0.5]
    h[0, wiring.primary_capsule_ids[1]] = [0.8, 0.6]
    h[0, wiring.output_capsule_ids[0]] = [0.9, 0.5]
    couplings = []
    for iterations in range(4):
        routing.iterations = iterations
        couplings.append(np.array(routing.coefficients(mx.array(h)))[0, :, 0])
    assert np.allclose(couplings[0], 0.5)
    for before, after in itertools.pairwise(couplings):
        assert (after > before).all()


def test_gains_scale_primary_to_output_synapses_by_the_coupling():
    wiring = DynamicRouting(3, 2, output_capsules=2).build(2)
    routing = routed("ltc", wiring)
    h = mx.random.normal((2, wiring.units), key=mx.random.key(3))
    c = np.array(routing.coefficients(h))
    gains = np.array(routing.gains(h))
    i, j = 1, 0
    block = np.ix_(wiring.primary_capsule_ids[i], wiring.output_capsule_ids[j])
    assert np.allclose(gains[0][block], 2 * c[0, i, j])
    assert np.allclose(gains[1][block], 2 * c[1, i, j])
    assert np.all(gains[:, ~wiring.routed_synapses()] == 1.0)


@pytest.mark.parametrize("cell", ["ltc", "cfc"])
def test_uniform_coupling_is_the_plain_network(cell):
    wiring = DynamicRouting(3, 2, output_capsules=2).build(2)
    routing = routed(cell, wiring, iterations=0)
    x = mx.random.normal((3, 5, 2), key=mx.random.key(0))
    plain, _ = routing.model(x)
    out, state = routing(x)
    assert out.shape == (3, 5, 4) and state.shape == (3, wiring.units)
    assert np.allclose(np.array(out), np.array(plain), atol=1e-5)
    routing.iterations = 2
    assert not np.allclose(np.array(routing(x)[0]), np.array(plain), atol=1e-3)


@pytest.mark.parametrize("cell", ["ltc", "cfc"])
def test_gradients_flow_through_the_routing_to_upstream_parameters(cell, italy):
    wiring = DynamicRouting(3, 2, output_capsules=2).build(1)
    model = Classifier(routed(cell, wiring, iterations=2), 2)
    x, y = italy[0][:8, :10], italy[1][:8]
    _, grads = nn.value_and_grad(model, cross_entropy)(model, x, y)
    flat = dict(tree_flatten(grads))
    assert np.abs(np.array(flat["routing.prediction"])).max() > 1e-6
    if cell == "ltc":
        upstream = np.array(flat["routing.model.rnn_cell.sensory_w"])[:, 4:]
    else:
        upstream = np.array(flat["routing.model.rnn_cell.layer_0.ff1.weight"])
    assert np.abs(upstream).max() > 1e-6


# -- training ------------------------------------------------------------------


@pytest.mark.parametrize(("cell", "lr"), [("ltc", 0.03), ("cfc", 0.01)])
def test_routed_network_learns_italy_power_demand(cell, lr, italy):
    wiring = DynamicRouting(4, 3, output_capsules=2, routing_iterations=2).build(1)
    model = Classifier(routed(cell, wiring), 2)
    x, y = italy
    # The routed step is cheaper run eagerly than compiled (a long trace).
    step = make_train_step(
        model, optim.Adam(learning_rate=lr), cross_entropy, compile=False
    )
    start = cross_entropy(model, x, y).item()
    for _ in range(20):
        step(x, y)
    end = cross_entropy(model, x, y).item()
    # Measured with seed 0: ltc 0.76 -> 0.32, cfc 0.65 -> 0.10.
    assert end < 0.6 * start


def test_docs_example_routes_and_learns():
    namespace = docs_example("dynamic_routing")
    c = namespace["coupling"]
    assert np.allclose(c.sum(axis=-1), 1.0, atol=1e-6)
    assert namespace["last_loss"] < namespace["first_loss"]
