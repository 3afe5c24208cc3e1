"""The meta wiring, the fast-synapse parameter subset and first-order MAML."""

from __future__ import annotations

import json
import re
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
import pytest
from mlx.utils import tree_flatten
from ncp_wiring_meta import FirstOrderMAML, Meta, sine_task, sine_tasks

from ncp_core import adapt, plugins
from ncp_core.errors import ModelError, WiringError
from ncp_core.rnn import LTC, CfC
from ncp_core.train import SequenceModel


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


def mse(model, x, y):
    return mx.mean(mx.square(model(x) - y))


def regressor(cell: str, wiring: Meta, seed: int = 0) -> SequenceModel:
    mx.random.seed(seed)
    if cell == "ltc":
        rnn = LTC(1, wiring, ode_unfolds=3)
    else:
        rnn = CfC(1, wiring, intra_layer="wiring")
    return SequenceModel(rnn, wiring.output_dim, 1)


def flat(tree) -> dict[str, np.ndarray]:
    return {k: np.array(v) for k, v in tree_flatten(tree)}


def adapted_error(maml, tasks) -> float:
    """Mean query MSE after adapting to each task's support, model restored."""
    model = maml.model
    errors = []
    for support, query in tasks:
        saved = model.parameters()
        maml.adapt(support)
        errors.append(mse(model, *query).item())
        model.update(saved)
    return float(np.mean(errors))


# -- structure ---------------------------------------------------------------


def test_meta_groups_are_motor_then_fast_then_slow():
    wiring = Meta(6, 4, output_neurons=2)
    assert wiring.units == 12 and wiring.output_dim == 2
    assert {k: v.tolist() for k, v in wiring.groups.items()} == {
        "motor": [0, 1],
        "fast": [2, 3, 4, 5, 6, 7],
        "slow": [8, 9, 10, 11],
    }
    assert [ids.tolist() for ids in wiring.layers] == [list(range(2, 12)), [0, 1]]


def test_meta_synapses_follow_the_fast_slow_rule():
    wiring = Meta(
        6,
        4,
        output_neurons=2,
        recurrent_density=0.5,
        modulation_density=0.5,
        sensory_density=0.5,
    ).build(4)
    motor, fast, slow = (wiring.groups[g] for g in ("motor", "fast", "slow"))
    present = wiring.adjacency != 0
    assert present[np.ix_(fast, motor)].all()  # fast neurons drive the outputs
    assert not present[np.ix_(slow, motor)].any()
    assert not present[np.ix_(fast, slow)].any()  # slow never hears from fast
    assert not present[motor].any()
    assert present[np.ix_(slow, fast)].sum(axis=0).tolist() == [2] * 6
    assert present[np.ix_(fast, fast)].sum(axis=0).tolist() == [3] * 6
    assert present[np.ix_(slow, slow)].sum(axis=0).tolist() == [2] * 4
    sensory = (wiring.sensory_adjacency != 0).sum(axis=0)
    assert sensory[fast].tolist() == [2] * 6 and sensory[slow].tolist() == [2] * 4
    assert sensory[motor].tolist() == [0, 0]
    assert wiring.validate() == []


def test_meta_round_trips_through_json():
    wiring = Meta(5, 3, output_neurons=1, seed=7).build(2)
    restored = Meta.from_config(json.loads(json.dumps(wiring.config())))
    assert restored == wiring
    record = json.loads(json.dumps(plugins.wiring_record(wiring)))
    assert plugins.wiring_from_config(record) == wiring


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"fast_neurons": 0, "slow_neurons": 2}, "fast_neurons must be at least 1"),
        ({"fast_neurons": 2, "slow_neurons": 0}, "slow_neurons must be at least 1"),
        (
            {"fast_neurons": 2, "slow_neurons": 2, "output_neurons": 0},
            "output_neurons must be at least 1",
        ),
        (
            {"fast_neurons": 2, "slow_neurons": 2, "recurrent_density": 2.0},
            "recurrent_density must be a number in [0.0, 1.0]",
        ),
        (
            {"fast_neurons": 2, "slow_neurons": 2, "modulation_density": 0.0},
            "cut the slow signal off",
        ),
        (
            {"fast_neurons": 2, "slow_neurons": 2, "sensory_density": 0.0},
            "cut the input signal off",
        ),
    ],
)
def test_meta_rejects_bad_parameters_with_a_clear_error(params, message):
    with pytest.raises(WiringError, match=re.escape(message)):
        Meta(**params)


def test_meta_is_found_through_its_entry_point():
    info = plugins.wiring_info("meta")
    assert info.cls is Meta and info.distribution == "ncp-wiring-meta"


# -- the fast-synapse subset -------------------------------------------------


def test_parameter_mask_selects_ltc_synapses_into_the_fast_group():
    wiring = Meta(4, 3, output_neurons=1).build(1)
    model = regressor("ltc", wiring)
    mask = flat(adapt.synapse_parameter_mask(model, "fast"))
    chosen = np.zeros(wiring.units)
    chosen[wiring.groups["fast"]] = 1
    for name in ("w", "sigma", "mu", "erev"):
        assert np.array_equal(mask[f"rnn.rnn_cell.{name}"], np.tile(chosen, (8, 1)))
        assert np.array_equal(mask[f"rnn.rnn_cell.sensory_{name}"], chosen[None, :])
    for name in ("gleak", "vleak", "cm", "input_w", "output_w", "head.weight"):
        key = name if name.startswith("head") else f"rnn.rnn_cell.{name}"
        assert not mask[key].any()
    with_neurons = flat(
        adapt.synapse_parameter_mask(model, "fast", neuron_parameters=True)
    )
    assert np.array_equal(with_neurons["rnn.rnn_cell.gleak"], chosen)


def test_parameter_mask_selects_cfc_rows_of_the_fast_neurons():
    wiring = Meta(4, 3, output_neurons=1).build(1)
    model = regressor("cfc", wiring)
    mask = flat(adapt.synapse_parameter_mask(model, "fast"))
    # Layer 0 holds fast then slow neurons: rows 0-3 are the fast ones.
    rows = np.array([1, 1, 1, 1, 0, 0, 0], np.float32)
    for head in ("ff1", "ff2", "time_a", "time_b"):
        weight = mask[f"rnn.rnn_cell.layer_0.{head}.weight"]
        assert np.array_equal(weight, np.tile(rows[:, None], (1, 1 + 7)))
        assert not mask[f"rnn.rnn_cell.layer_0.{head}.bias"].any()
        assert not mask[f"rnn.rnn_cell.layer_1.{head}.weight"].any()


def test_inner_loop_moves_only_the_fast_synapses():
    wiring = Meta(4, 3, output_neurons=1).build(1)
    model = regressor("cfc", wiring)
    maml = FirstOrderMAML(model, mse, inner_lr=0.1, inner_steps=3)
    support, _, _ = sine_task(np.random.default_rng(0), 10, steps=2)
    before = flat(model.parameters())
    losses = maml.adapt(support)
    after = flat(model.parameters())
    mask = flat(maml.mask)
    moved = {k: np.abs(after[k] - before[k]) for k in before}
    assert all(not moved[k][mask[k] == 0].any() for k in before)
    assert sum(moved[k][mask[k] == 1].sum() for k in before) > 0
    assert losses[-1] < losses[0]


def test_meta_step_moves_the_slow_synapses_too():
    wiring = Meta(4, 3, output_neurons=1).build(1)
    model = regressor("cfc", wiring)
    maml = FirstOrderMAML(
        model,
        mse,
        inner_lr=0.1,
        inner_steps=2,
        optimizer=optim.Adam(learning_rate=0.01),
    )
    before = flat(model.parameters())
    maml.meta_step(sine_tasks(np.random.default_rng(0), 2, 10, 10, steps=2))
    after = flat(model.parameters())
    slow_rows = slice(4, 7)  # the slow neurons' rows of layer 0
    key = "rnn.rnn_cell.layer_0.ff1.weight"
    assert np.abs(after[key][slow_rows] - before[key][slow_rows]).max() > 0
    assert np.abs(after["head.weight"] - before["head.weight"]).max() > 0


def test_maml_rejects_bad_settings():
    model = regressor("cfc", Meta(3, 2).build(1))
    with pytest.raises(ModelError, match="inner_lr"):
        FirstOrderMAML(model, mse, inner_lr=0.0)
    with pytest.raises(ModelError, match="inner_steps"):
        FirstOrderMAML(model, mse, inner_steps=-1)
    with pytest.raises(ModelError, match="at least one"):
        FirstOrderMAML(model, mse).meta_step([])
    with pytest.raises(WiringError, match="unknown neuron group 'quick'"):
        FirstOrderMAML(model, mse, targets="quick")


def test_sine_tasks_follow_the_benchmark_ranges():
    rng = np.random.default_rng(0)
    for _ in range(20):
        (x, y), (xq, yq), (amplitude, phase) = sine_task(rng, 10, 30, steps=2)
        assert x.shape == (10, 2, 1) and y.shape == (10, 1)
        assert xq.shape == (30, 2, 1) and yq.shape == (30, 1)
        assert 0.1 <= amplitude <= 5 and 0 <= phase <= np.pi
        x = np.array(x)
        assert np.all(np.abs(x) <= 5) and np.array_equal(x[:, 0], x[:, 1])
        assert np.allclose(
            np.array(y)[:, 0], amplitude * np.sin(x[:, 0, 0] - phase), atol=1e-5
        )


# -- learning ------------------------------------------------------------------


@pytest.mark.parametrize(("cell", "steps"), [("ltc", 1), ("cfc", 2)])
def test_meta_training_lowers_the_error_after_adaptation(cell, steps):
    model = regressor(cell, Meta(6, 4, output_neurons=1, seed=0).build(1))
    maml = FirstOrderMAML(
        model,
        mse,
        inner_lr=0.1,
        inner_steps=3,
        optimizer=optim.Adam(learning_rate=0.005),
    )
    held_out = sine_tasks(np.random.default_rng(123), 10, 10, 50, steps)
    before = adapted_error(maml, held_out)
    rng = np.random.default_rng(0)
    for _ in range(100):
        maml.meta_step(sine_tasks(rng, 4, 10, 10, steps))
    after = adapted_error(maml, held_out)
    # Measured with seed 0: ltc 2.93 -> 1.58, cfc 2.04 -> 0.90.
    assert after < 0.7 * before


def test_meta_learned_model_adapts_to_a_new_sine_better_than_joint_training():
    """The few-shot sine benchmark: 10 points of a new sine, 3 inner steps."""
    steps, iterations = 2, 250
    wiring = Meta(12, 6, output_neurons=1, seed=0).build(1)

    meta_model = regressor("cfc", wiring)
    maml = FirstOrderMAML(
        meta_model,
        mse,
        inner_lr=0.1,
        inner_steps=3,
        optimizer=optim.Adam(learning_rate=0.005),
    )
    rng = np.random.default_rng(0)
    for _ in range(iterations):
        maml.meta_step(sine_tasks(rng, 4, 10, 10, steps))

    # The baseline: the same model, trained on the same tasks' points pooled.
    joint_model = regressor("cfc", Meta(12, 6, output_neurons=1, seed=0).build(1))
    optimizer = optim.Adam(learning_rate=0.005)
    loss_and_grad = nn.value_and_grad(joint_model, mse)
    rng = np.random.default_rng(0)
    for _ in range(iterations):
        tasks = sine_tasks(rng, 4, 10, 10, steps)
        x = mx.concatenate([part[0] for task in tasks for part in task])
        y = mx.concatenate([part[1] for task in tasks for part in task])
        _, grads = loss_and_grad(joint_model, x, y)
        optimizer.update(joint_model, grads)
        mx.eval(joint_model.parameters(), optimizer.state)

    held_out = sine_tasks(np.random.default_rng(123), 20, 10, 100, steps)
    meta_error = adapted_error(maml, held_out)
    joint_error = adapted_error(
        FirstOrderMAML(joint_model, mse, inner_lr=0.1, inner_steps=3), held_out
    )
    # Measured with seed 0: meta-learned 1.16, jointly trained 3.37 (MSE).
    assert meta_error < 0.6 * joint_error


def test_docs_example_adapts_to_a_new_sine():
    namespace = docs_example("meta")
    assert namespace["error_after"] < 0.7 * namespace["error_before"]
