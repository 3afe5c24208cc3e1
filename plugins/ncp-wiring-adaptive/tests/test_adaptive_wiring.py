"""The adaptive wiring: structure, updates, and adapting a model that trains."""

from __future__ import annotations

import json
import re
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
import pytest
from ncp_wiring_adaptive import Adaptive, AdaptiveConnectivity

import ncp_core.train as api
from ncp_core import adapt, plugins
from ncp_core.data.bundled import load_bundled
from ncp_core.errors import WiringError
from ncp_core.rnn import LTC, CfC
from ncp_core.train import SequenceModel
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


@pytest.fixture(scope="module")
def italy():
    """40 standardised ItalyPowerDemand series and their class ids."""
    data = load_bundled("italy_power_demand")
    x = data.X_train[:40].astype(np.float32)
    x = (x - x.mean()) / x.std()
    classes = sorted(set(data.y_train.tolist()))
    y = np.array([classes.index(v) for v in data.y_train[:40]], np.int32)
    return mx.array(x), mx.array(y)


def cross_entropy(model, x, y):
    return nn.losses.cross_entropy(model(x), y, reduction="mean")


def classifier(cell: str, wiring: Adaptive) -> SequenceModel:
    mx.random.seed(0)
    if cell == "ltc":
        rnn = LTC(1, wiring, ode_unfolds=3)
    else:
        rnn = CfC(1, wiring, intra_layer="wiring")
    return SequenceModel(rnn, wiring.output_dim, 2)


def moved(before: np.ndarray, after: np.ndarray) -> tuple[set, set]:
    pruned = {tuple(p) for p in np.argwhere((before != 0) & (after == 0))}
    grown = {tuple(p) for p in np.argwhere((before == 0) & (after != 0))}
    return pruned, grown


# -- structure ---------------------------------------------------------------


def test_adaptive_own_structure_has_the_stated_fan_ins():
    wiring = Adaptive(12, 2, density=0.3, sensory_density=0.5, seed=3).build(4)
    inter = np.arange(2, 12)
    assert wiring.groups["motor"].tolist() == [0, 1]
    assert wiring.groups["inter"].tolist() == inter.tolist()
    assert [layer.tolist() for layer in wiring.layers] == [inter.tolist(), [0, 1]]
    present = wiring.adjacency != 0
    assert present[np.ix_(inter, inter)].sum(axis=0).tolist() == [3] * 10
    assert present[np.ix_(inter, [0, 1])].sum(axis=0).tolist() == [3, 3]
    assert not present[[0, 1]].any()  # motor neurons drive nothing
    sensory = wiring.sensory_adjacency != 0
    assert sensory[:, inter].sum(axis=0).tolist() == [2] * 10
    assert not sensory[:, :2].any()
    assert wiring.validate() == []


def test_adaptive_starts_from_a_registered_wiring_given_by_name():
    wiring = Adaptive(base="auto_ncp", base_params={"units": 16, "output_size": 2})
    base = plugins.get_wiring("auto_ncp", units=16, output_size=2)
    wiring.build(4)
    base.build(4)
    assert np.array_equal(wiring.adjacency, base.adjacency)
    assert np.array_equal(wiring.sensory_adjacency, base.sensory_adjacency)
    assert list(wiring.groups) == list(base.groups)
    assert [ids.tolist() for ids in wiring.layers] == [
        ids.tolist() for ids in base.layers
    ]


def test_adaptive_passes_units_and_outputs_on_to_its_base():
    wiring = Adaptive(20, 3, base="auto_ncp")
    assert (wiring.units, wiring.output_dim) == (20, 3)
    assert wiring.groups["motor"].tolist() == [0, 1, 2]


def test_adaptive_round_trips_through_json_after_updates():
    wiring = Adaptive(10, 2, seed=1).build(3)
    rng = np.random.default_rng(0)
    wiring.update_connectivity(rng.random((10, 10)), 0.3)
    restored = Adaptive.from_config(json.loads(json.dumps(wiring.config())))
    assert restored == wiring
    assert restored.updates == 1
    assert np.array_equal(restored.candidate_polarity(), wiring.candidate_polarity())
    record = json.loads(json.dumps(plugins.wiring_record(wiring)))
    assert plugins.wiring_from_config(record) == wiring


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "needs units"),
        ({"units": 2, "output_dim": 2}, "at least one inter neuron"),
        ({"units": 0}, "units must be at least 1"),
        ({"units": 8, "density": 1.5}, "density must be a number in [0.0, 1.0]"),
        ({"units": 8, "excitatory": -0.1}, "excitatory"),
        ({"units": 8, "base_params": {"units": 8}}, "without a base"),
        (
            {
                "units": 9,
                "base": "ncp",
                "base_params": {
                    "inter_neurons": 3,
                    "command_neurons": 2,
                    "motor_neurons": 1,
                    "sensory_fanout": 2,
                    "inter_fanout": 2,
                    "recurrent_command_synapses": 1,
                    "motor_fanin": 2,
                },
            },
            "units=9 but the base wiring 'ncp' has units 6",
        ),
    ],
)
def test_adaptive_rejects_bad_parameters_with_a_clear_error(params, message):
    with pytest.raises(WiringError, match=re.escape(message)):
        Adaptive(**params)


def test_update_rejects_scores_of_the_wrong_shape_and_bad_fractions():
    wiring = Adaptive(8, 2).build(2)
    with pytest.raises(WiringError, match=re.escape("shape (8, 8)")):
        wiring.update_connectivity(np.ones((8, 7)), 0.1)
    with pytest.raises(WiringError, match="fraction"):
        wiring.update_connectivity(np.ones((8, 8)), 1.5)
    with pytest.raises(WiringError, match="build"):
        Adaptive(8, 2).update_connectivity(np.ones((8, 8)), 0.1)


def test_adaptive_is_found_through_its_entry_point():
    info = plugins.wiring_info("adaptive")
    assert info.cls is Adaptive
    assert info.distribution == "ncp-wiring-adaptive"
    assert isinstance(plugins.get_wiring("adaptive", units=6), Adaptive)


# -- updates -----------------------------------------------------------------


def test_synapse_count_stays_constant_across_updates():
    wiring = Adaptive(16, 2, seed=2).build(3)
    count = wiring.synapse_count
    sensory = wiring.sensory_adjacency.copy()
    rng = np.random.default_rng(1)
    changed = 0
    for _ in range(5):
        before = wiring.adjacency.copy()
        changes = wiring.update_connectivity(rng.random((16, 16)), 0.25)
        assert wiring.synapse_count == count
        changed += len(changes["pruned"])
        assert not np.array_equal(before, wiring.adjacency)
    assert changed == 5 * round(0.25 * count)
    assert np.array_equal(wiring.sensory_adjacency, sensory)  # sensory stays


def test_update_prunes_the_weakest_and_grows_the_highest_scored():
    wiring = Adaptive(12, 2, seed=4).build(2)
    rng = np.random.default_rng(5)
    scores = rng.random((12, 12))
    before = wiring.adjacency.copy()
    protected = wiring.protected_synapses(scores)
    changes = wiring.update_connectivity(scores, 0.2)
    k = round(0.2 * np.count_nonzero(before))
    prunable = np.argwhere((before != 0) & ~protected)
    weakest = prunable[np.argsort(scores[tuple(prunable.T)], kind="stable")][:k]
    absent = np.argwhere(before == 0)
    strongest = absent[np.argsort(-scores[tuple(absent.T)], kind="stable")][:k]
    assert changes["pruned"].tolist() == weakest.tolist()
    assert changes["grown"].tolist() == strongest.tolist()
    assert moved(before, wiring.adjacency) == (
        {tuple(p) for p in weakest},
        {tuple(p) for p in strongest},
    )
    # every remaining synapse scored at least as high as every pruned one
    kept = scores[(wiring.adjacency != 0) & (before != 0) & ~protected]
    assert kept.min() >= scores[tuple(weakest.T)].max()


def test_update_never_cuts_an_output_off_from_the_inputs():
    wiring = Adaptive(10, 2, density=0.1, seed=0).build(2)
    # The synapses into the outputs score lowest: the weakest of all.
    scores = np.ones((10, 10))
    scores[:, :2] = 0.0
    for _ in range(3):
        wiring.update_connectivity(scores, 0.5)
        assert wiring.validate() == []
        assert (wiring.adjacency[:, :2] != 0).any(axis=0).all()


def test_pairs_scored_nan_never_change():
    wiring = Adaptive(10, 2, seed=0).build(2)
    scores = np.random.default_rng(2).random((10, 10))
    frozen = np.zeros((10, 10), bool)
    frozen[2:6] = True
    scores[frozen] = np.nan
    before = wiring.adjacency.copy()
    wiring.update_connectivity(scores, 0.5)
    assert np.array_equal(wiring.adjacency[frozen], before[frozen])
    assert not np.array_equal(wiring.adjacency, before)


@pytest.mark.parametrize(("excitatory", "sign"), [(1.0, 1), (0.0, -1)])
def test_grown_synapses_take_the_polarity_rule(excitatory, sign):
    wiring = Adaptive(10, 2, excitatory=excitatory, seed=0).build(2)
    changes = wiring.update_connectivity(np.random.default_rng(3).random((10, 10)), 0.5)
    grown = wiring.adjacency[tuple(changes["grown"].T)]
    assert grown.size > 0 and np.all(grown == sign)


def test_candidate_polarity_is_excitatory_with_the_given_probability():
    polarity = Adaptive(60, 2, excitatory=0.7, seed=0).candidate_polarity()
    assert set(np.unique(polarity).tolist()) == {-1, 1}
    assert abs((polarity == 1).mean() - 0.7) < 0.03


# -- scores from a model -------------------------------------------------------


@pytest.mark.parametrize("cell", ["ltc", "cfc"])
def test_scores_are_magnitudes_of_present_and_gradients_of_absent_synapses(cell, italy):
    wiring = Adaptive(8, 2, seed=1).build(1)
    model = classifier(cell, wiring)
    x, y = italy[0][:8], italy[1][:8]
    polarity = wiring.candidate_polarity()
    loss = cross_entropy(model, x, y).item()
    scores = adapt.synapse_scores(model, cross_entropy, (x, y), polarity)
    assert cross_entropy(model, x, y).item() == loss  # the model is untouched

    present = wiring.adjacency != 0
    usable = adapt.synapse_usage(model)
    assert np.isnan(scores[~usable]).all() and np.isfinite(scores[usable]).all()
    magnitudes = adapt.synapse_magnitudes(model)
    assert np.allclose(scores[present], magnitudes[present])
    if cell == "ltc":
        cell_w = model.rnn.rnn_cell.w
        assert np.allclose(magnitudes, np.array(nn.softplus(cell_w)), atol=1e-6)

    # finite difference: switch the best-scored absent synapse on with gain eps
    candidates = np.argwhere(~present & usable)
    i, j = candidates[np.argmax(scores[tuple(candidates.T)])]
    saved = model.parameters()
    rnn = model.rnn
    switched = wiring.adjacency.copy()
    switched[i, j] = polarity[i, j]
    rnn.set_wiring_masks(switched)
    gains = np.ones((8, 8), np.float32)
    eps = 1e-3
    gains[i, j] = eps
    rnn.set_synapse_gains(gains)
    slope = abs(cross_entropy(model, x, y).item() - loss) / eps
    rnn.set_wiring_masks(wiring.adjacency)
    rnn.set_synapse_gains(None)
    model.update(saved)
    assert slope == pytest.approx(scores[i, j], rel=0.05)


@pytest.mark.parametrize("cell", ["ltc", "cfc"])
def test_outputs_change_only_through_the_changed_synapses(cell, italy):
    wiring = Adaptive(10, 2, seed=2).build(1)
    model = classifier(cell, wiring)
    x, y = italy
    before = wiring.adjacency.copy()
    old_parameters = model.parameters()
    old_out = np.array(model(x))

    callback = AdaptiveConnectivity(fraction=0.2, new_synapses="stored")
    changes = callback.adapt(model, cross_entropy, (x, y))
    assert len(changes["pruned"]) == round(0.2 * np.count_nonzero(before))
    new_out = np.array(model(x))

    # The same starting model given only the new masks computes the same.
    reference = classifier(cell, Adaptive(10, 2, seed=2).build(1))
    reference.update(old_parameters)
    reference.rnn.set_wiring_masks(wiring.adjacency)
    assert np.array_equal(np.array(reference(x)), new_out)
    assert not np.allclose(new_out, old_out)
    # Kept synapses keep every trained value.
    kept = (before != 0) & (wiring.adjacency != 0)
    if cell == "ltc":
        old_cell = old_parameters["rnn"]["rnn_cell"]
        new_cell = model.rnn.rnn_cell
        for name in ("w", "sigma", "mu", "erev"):
            assert np.array_equal(
                np.array(new_cell[name])[kept], np.array(old_cell[name])[kept]
            )
        grown = tuple(changes["grown"].T)
        assert np.array_equal(
            np.array(new_cell.erev)[grown], wiring.adjacency[grown].astype(np.float32)
        )


def test_zero_initialised_growth_leaves_a_cfc_function_unchanged(italy):
    wiring = Adaptive(10, 2, seed=2).build(1)
    model = classifier("cfc", wiring)
    x, y = italy
    before = np.array(model(x))
    original = wiring.adjacency.copy()
    AdaptiveConnectivity(fraction=0.2).adapt(model, cross_entropy, (x, y))
    pruned, grown = moved(original, wiring.adjacency)
    assert grown and not np.allclose(np.array(model(x)), before)
    # With the pruned synapses back, the grown ones (at weight 0) change nothing.
    restored = wiring.adjacency.copy()
    for i, j in pruned:
        restored[i, j] = original[i, j]
    model.rnn.set_wiring_masks(restored)
    assert np.allclose(np.array(model(x)), before, atol=1e-6)


def test_a_compiled_step_follows_the_new_masks(italy):
    wiring = Adaptive(10, 2, seed=5).build(1)
    model = classifier("ltc", wiring)
    x, y = italy
    step = make_train_step(model, optim.SGD(learning_rate=0.0), cross_entropy)
    step(x, y)
    AdaptiveConnectivity(fraction=0.3).adapt(model, cross_entropy, (x, y))
    assert step(x, y).item() == pytest.approx(cross_entropy(model, x, y).item())


# -- training ------------------------------------------------------------------


@pytest.mark.parametrize(("cell", "lr"), [("ltc", 0.03), ("cfc", 0.01)])
def test_training_goes_on_through_updates(cell, lr, italy):
    wiring = Adaptive(10, 2, seed=0).build(1)
    model = classifier(cell, wiring)
    x, y = italy
    step = make_train_step(model, optim.Adam(learning_rate=lr), cross_entropy)
    callback = AdaptiveConnectivity(fraction=0.1)
    start = cross_entropy(model, x, y).item()
    count = wiring.synapse_count
    after_updates = []
    for _ in range(4):
        for _ in range(10):
            step(x, y)
        callback.adapt(model, cross_entropy, (x, y))
        after_updates.append(cross_entropy(model, x, y).item())
        assert wiring.synapse_count == count
    # Measured with seed 0: ltc 0.72 -> 0.28, cfc 0.91 -> 0.07.
    assert after_updates[-1] < 0.6 * start
    assert after_updates[-1] < after_updates[0]


def fit_adaptive(out, val_fraction=0.25, **extra):
    callback = adapt.WiringCallbacks(adapt_every=1, adapt_fraction=0.2)
    run = api.fit(
        "italy_power_demand",
        wiring="adaptive",
        wiring_params={"units": 10, "seed": 1},
        cell="cfc",
        cell_params={"intra_layer": "wiring"},
        epochs=3,
        batch_size=8,
        lr=0.02,
        limit_train=32,
        out=out,
        val_fraction=val_fraction,
        callbacks=[callback],
        plots=False,
        **extra,
    )
    return run, callback


def test_fit_records_the_adjacency_of_the_saved_model(tmp_path):
    start = plugins.get_wiring("adaptive", units=10, output_dim=2, seed=1).build(1)
    # Without validation every epoch is the best: the saved weights are those
    # of epoch 3, trained on the wiring of the second update.
    run, callback = fit_adaptive(tmp_path / "run", val_fraction=0.0)
    updates = callback.callbacks[0].history
    assert len(updates) == 3 and all(len(u["pruned"]) for u in updates)
    assert run.best_epoch == 3

    config = json.loads((tmp_path / "run" / "config.json").read_text())
    stored = np.asarray(config["wiring"]["adjacency"], np.int8)
    assert np.array_equal(stored, run.wiring.adjacency)
    assert not np.array_equal(stored, start.adjacency)
    assert int(np.count_nonzero(stored)) == start.synapse_count

    same = api.load_run(tmp_path / "run")
    assert np.array_equal(same.wiring.adjacency, stored)
    series = load_bundled("italy_power_demand").X_test[:16]
    assert np.array_equal(
        run.predict(series).probabilities, same.predict(series).probabilities
    )
    assert same.evaluate("italy_power_demand")["loss"] == pytest.approx(
        run.metrics["loss"], abs=1e-6
    )


def test_a_resumed_adaptive_run_ends_like_an_uninterrupted_one(tmp_path):
    whole, _ = fit_adaptive(tmp_path / "whole")
    fit_adaptive(tmp_path / "parts", stop_after_epochs=2)
    callback = adapt.WiringCallbacks(adapt_every=1, adapt_fraction=0.2)
    resumed = api.resume(tmp_path / "parts", callbacks=[callback], plots=False)
    assert np.array_equal(resumed.wiring.adjacency, whole.wiring.adjacency)
    assert [r["loss"] for r in resumed.history] == pytest.approx(
        [r["loss"] for r in whole.history], abs=1e-6
    )


def test_adapt_options_for_a_wiring_that_does_not_change_are_refused():
    callback = adapt.WiringCallbacks(adapt_every=2)
    with pytest.raises(WiringError, match="does not change during training"):
        api.fit(
            "italy_power_demand",
            wiring="auto_ncp",
            wiring_params={"units": 8},
            epochs=1,
            limit_train=8,
            callbacks=[callback],
            plots=False,
        )


def test_adaptive_training_options_are_checked():
    wiring = Adaptive(6, 1)
    (callback,) = wiring.training_callbacks(adapt_every=3, adapt_fraction=0.05)
    assert (callback.every, callback.fraction) == (3, 0.05)
    with pytest.raises(WiringError, match="unknown training options"):
        wiring.training_callbacks(adapt_evry=3)
    with pytest.raises(WiringError, match="adapt_fraction"):
        AdaptiveConnectivity(fraction=2.0)


def test_docs_example_runs_and_keeps_the_synapse_count():
    namespace = docs_example("adaptive")
    assert namespace["count_after"] == namespace["count_before"]
    assert namespace["moved"] > 0
    assert namespace["last_loss"] < namespace["first_loss"]
