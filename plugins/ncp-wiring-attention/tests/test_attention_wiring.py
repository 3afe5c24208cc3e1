"""The ``attention`` wiring: groups, the connectivity rule, errors, config, docs."""

from __future__ import annotations

import importlib.metadata
import json
import re
from pathlib import Path

import numpy as np
import pytest
from ncp_wiring_attention import Attention, ncp_register_wirings

from ncp_core.errors import WiringError


def repo_root() -> Path:
    """The ncp-core checkout: the first parent whose pyproject names ncp-core."""
    for folder in Path(__file__).resolve().parents:
        project = folder / "pyproject.toml"
        if project.is_file() and 'name = "ncp-core"' in project.read_text():
            return folder
    raise RuntimeError(f"no ncp-core checkout above {__file__}")


def run_doc_example(page: str) -> dict:
    """Execute the first python block of ``docs/wirings/<page>.md``."""
    text = (repo_root() / "docs" / "wirings" / f"{page}.md").read_text(encoding="utf-8")
    block = re.search(r"```python\n(.*?)```", text, re.DOTALL)
    assert block is not None, f"docs/wirings/{page}.md has no python example"
    namespace: dict = {}
    exec(compile(block.group(1), f"{page}.md", "exec"), namespace)
    return namespace


def head_of(wiring: Attention, group: str) -> dict[int, int]:
    """Neuron id → head index, for one of the headed groups."""
    heads = wiring.heads(group)
    return {int(n): h for h, row in enumerate(heads) for n in row}


def test_attention_ids_put_readout_first_then_query_key_value_output_ff():
    wiring = Attention(hidden_size=8, num_heads=2, ff_size=6, output_size=3)

    assert wiring.units == 3 + 4 * 8 + 6
    assert wiring.output_dim == 3
    expected = {
        "readout": range(0, 3),
        "query": range(3, 11),
        "key": range(11, 19),
        "value": range(19, 27),
        "head_output": range(27, 35),
        "feedforward": range(35, 41),
    }
    assert list(wiring.groups) == list(expected)
    for name, ids in expected.items():
        assert wiring.groups[name].tolist() == list(ids)
    assert wiring.heads("key").tolist() == [list(range(11, 15)), list(range(15, 19))]


def test_attention_output_size_defaults_to_hidden_size():
    wiring = Attention(hidden_size=12, num_heads=3, ff_size=4)

    assert wiring.output_dim == 12
    assert wiring.params["output_size"] is None


def test_attention_inputs_reach_exactly_query_key_and_value():
    wiring = Attention(hidden_size=8, num_heads=2, ff_size=6, output_size=3).build(5)
    receives = np.any(wiring.sensory_adjacency != 0, axis=0)

    qkv = np.concatenate([wiring.groups[g] for g in ("query", "key", "value")])
    assert receives[qkv].all()
    assert np.flatnonzero(receives).tolist() == sorted(qkv.tolist())
    # input_density 1.0: every feature reaches every q/k/v neuron
    assert np.count_nonzero(wiring.sensory_adjacency) == 5 * qkv.size


def test_attention_synapses_are_exactly_the_documented_paths():
    wiring = Attention(hidden_size=8, num_heads=2, ff_size=6, output_size=3)
    allowed = np.zeros_like(wiring.adjacency, dtype=bool)
    for source, target in (
        ("query", "key"),
        ("key", "value"),
        ("value", "head_output"),
    ):
        for src_head, dst_head in zip(
            wiring.heads(source), wiring.heads(target), strict=True
        ):
            allowed[np.ix_(src_head, dst_head)] = True
    allowed[np.ix_(wiring.groups["head_output"], wiring.groups["feedforward"])] = True
    allowed[np.ix_(wiring.groups["feedforward"], wiring.groups["readout"])] = True

    present = wiring.adjacency != 0
    assert not (present & ~allowed).any()
    # densities 1.0: every allowed synapse is there
    assert (present == allowed).all()
    assert wiring.synapse_count == 3 * 2 * 4 * 4 + 8 * 6 + 6 * 3


def test_attention_heads_do_not_mix_before_the_feedforward_group():
    wiring = Attention(hidden_size=12, num_heads=3, ff_size=5, head_density=0.5)
    for source, target in (
        ("query", "key"),
        ("key", "value"),
        ("value", "head_output"),
    ):
        src_head, dst_head = head_of(wiring, source), head_of(wiring, target)
        block = wiring.adjacency[np.ix_(wiring.groups[source], wiring.groups[target])]
        rows, cols = np.nonzero(block)
        pairs = {
            (
                src_head[int(wiring.groups[source][r])],
                dst_head[int(wiring.groups[target][c])],
            )
            for r, c in zip(rows, cols, strict=True)
        }
        assert pairs == {(0, 0), (1, 1), (2, 2)}


def test_attention_densities_set_the_fan_in_of_every_target():
    wiring = Attention(
        hidden_size=16,
        num_heads=2,
        ff_size=10,
        output_size=4,
        input_density=0.25,
        head_density=0.5,
        ff_density=0.3,
    ).build(12)
    adjacency = wiring.adjacency != 0

    # fan-in = max(1, round(density · n))
    assert (adjacency[:, wiring.groups["key"]].sum(axis=0) == 4).all()
    assert (adjacency[:, wiring.groups["value"]].sum(axis=0) == 4).all()
    assert (adjacency[:, wiring.groups["head_output"]].sum(axis=0) == 4).all()
    assert (adjacency[:, wiring.groups["feedforward"]].sum(axis=0) == 5).all()
    assert (adjacency[:, wiring.groups["readout"]].sum(axis=0) == 3).all()
    sensory = wiring.sensory_adjacency != 0
    assert (sensory[:, wiring.layers[0]].sum(axis=0) == 3).all()
    assert wiring.validate() == []


def test_attention_layers_run_qkv_then_head_output_then_ff_then_readout():
    wiring = Attention(hidden_size=4, num_heads=2, ff_size=3, output_size=2)

    assert [layer.size for layer in wiring.layers] == [12, 4, 3, 2]
    assert wiring.layers[-1].tolist() == [0, 1]
    assert sorted(np.concatenate(wiring.layers).tolist()) == list(range(wiring.units))


def test_attention_excitatory_fraction_sets_polarities():
    all_excitatory = Attention(8, 2, 8, excitatory=1.0).build(4)
    all_inhibitory = Attention(8, 2, 8, excitatory=0.0).build(4)
    balanced = Attention(64, 4, 64, excitatory=0.5).build(8)

    assert set(np.unique(all_excitatory.adjacency)) == {0, 1}
    assert set(np.unique(all_excitatory.sensory_adjacency)) == {0, 1}
    assert set(np.unique(all_inhibitory.adjacency)) == {-1, 0}
    signs = balanced.adjacency[balanced.adjacency != 0]
    assert 0.45 < np.mean(signs > 0) < 0.55


def test_attention_same_seed_same_graph_other_seed_other_graph():
    first = Attention(16, 4, 8, head_density=0.5, seed=3).build(6)
    again = Attention(16, 4, 8, head_density=0.5, seed=3).build(6)
    other = Attention(16, 4, 8, head_density=0.5, seed=4).build(6)

    assert first == again
    assert first != other


def test_attention_config_round_trips_through_json():
    wiring = Attention(16, 4, 8, output_size=2, ff_density=0.5, seed=7).build(5)
    config = json.loads(json.dumps(wiring.config()))

    restored = Attention.from_config(config)
    assert restored == wiring
    assert restored.params == wiring.params
    assert restored.input_dim == 5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"hidden_size": 10, "num_heads": 4, "ff_size": 8},
            "hidden_size 10 is not divisible by num_heads 4",
        ),
        ({"hidden_size": 0, "num_heads": 1, "ff_size": 8}, "hidden_size must be at"),
        ({"hidden_size": 8, "num_heads": 2, "ff_size": -1}, "ff_size must be at"),
        (
            {"hidden_size": 8, "num_heads": 2, "ff_size": 4, "output_size": 0},
            "output_size",
        ),
        (
            {"hidden_size": 8, "num_heads": 2, "ff_size": 4, "head_density": 0.0},
            r"head_density must be a number in \(0, 1\], got 0.0",
        ),
        (
            {"hidden_size": 8, "num_heads": 2, "ff_size": 4, "ff_density": 1.5},
            "ff_density",
        ),
        (
            {"hidden_size": 8, "num_heads": 2, "ff_size": 4, "excitatory": 2},
            "excitatory",
        ),
    ],
)
def test_attention_rejects_bad_parameters_with_a_clear_error(kwargs, message):
    with pytest.raises(WiringError, match=message) as error:
        Attention(**kwargs)
    assert "'attention'" in str(error.value)


def test_attention_indivisible_heads_error_suggests_sizes():
    with pytest.raises(WiringError, match=r"e\.g\. 8 or 12"):
        Attention(hidden_size=10, num_heads=4, ff_size=8)


def test_attention_every_neuron_is_reached_from_the_inputs():
    wiring = Attention(
        24, 3, 16, output_size=5, input_density=0.1, head_density=0.1, ff_density=0.05
    ).build(9)

    assert wiring.reachable().all()
    assert wiring.validate() == []


def test_attention_registers_through_its_entry_point():
    entry_points = importlib.metadata.entry_points(group="ncp")
    ours = [ep for ep in entry_points if ep.name == "attention"]
    assert [ep.value for ep in ours] == ["ncp_wiring_attention"]
    assert ours[0].dist.name == "ncp-wiring-attention"

    registered: list[type] = []
    ours[0].load().ncp_register_wirings(registered.append)
    assert [cls.name for cls in registered] == ["attention", "cross_attention"]
    assert ncp_register_wirings.ncp_impl is not None  # pluggy's hookimpl mark


def test_attention_wirings_are_found_by_name_through_the_plugin_system():
    import ncp_core

    wiring = ncp_core.get_wiring("attention", hidden_size=8, num_heads=2, ff_size=4)
    cross = ncp_core.get_wiring(
        "cross_attention", query_size=4, key_size=2, value_size=4, num_heads=2
    )
    infos = {info.name: info for info in ncp_core.list_wirings()}

    assert wiring == Attention(8, 2, 4)
    assert type(cross).__name__ == "CrossAttention"
    assert infos["attention"].distribution == "ncp-wiring-attention"
    assert infos["cross_attention"].distribution == "ncp-wiring-attention"
    restored = ncp_core.wiring_from_config(json.loads(json.dumps(wiring.config())))
    assert restored == wiring


def test_attention_doc_example_runs():
    namespace = run_doc_example("attention")

    wiring = namespace["wiring"]
    assert isinstance(wiring, Attention)
    assert namespace["outputs"].shape == namespace["expected_shape"] == (8, 20, 2)
    assert namespace["key_heads"].tolist()[1] == [22, 23, 24, 25]
