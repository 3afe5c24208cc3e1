"""The ``language`` wiring and its TokenEncoder: rule, errors, config, docs."""

from __future__ import annotations

import importlib.metadata
import json
import math
import re
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
from ncp_wiring_language import Language, TokenEncoder

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
    path = repo_root() / "docs" / "wirings" / f"{page}.md"
    block = re.search(
        r"```python\n(.*?)```", path.read_text(encoding="utf-8"), re.DOTALL
    )
    assert block is not None, f"docs/wirings/{page}.md has no python example"
    namespace: dict = {}
    exec(compile(block.group(1), f"{page}.md", "exec"), namespace)
    return namespace


def test_language_ids_put_logits_first_then_layers():
    wiring = Language(vocab_size=5, hidden_size=6, num_layers=3, num_heads=2)

    assert wiring.units == 5 + 3 * 6
    assert wiring.output_dim == 5
    assert list(wiring.groups) == ["logits", "layer_0", "layer_1", "layer_2"]
    assert wiring.groups["layer_1"].tolist() == list(range(11, 17))
    assert wiring.heads(1).tolist() == [[11, 12, 13], [14, 15, 16]]
    assert [layer.tolist()[0] for layer in wiring.layers] == [5, 11, 17, 0]
    assert wiring.embed_dim == 6


def test_language_synapses_are_exactly_the_documented_paths():
    wiring = Language(vocab_size=4, hidden_size=6, num_layers=2, num_heads=3).build(6)
    allowed = np.zeros_like(wiring.adjacency, dtype=bool)
    for layer in range(2):
        for head in wiring.heads(layer):
            allowed[np.ix_(head, head)] = True
    allowed[np.ix_(wiring.groups["layer_0"], wiring.groups["layer_1"])] = True
    allowed[np.ix_(wiring.groups["layer_1"], wiring.groups["logits"])] = True

    assert ((wiring.adjacency != 0) == allowed).all()
    receives = np.any(wiring.sensory_adjacency != 0, axis=0)
    assert np.flatnonzero(receives).tolist() == wiring.groups["layer_0"].tolist()


def test_language_heads_do_not_mix_inside_a_layer():
    wiring = Language(10, 16, 2, 4, recurrent_density=0.5)
    for layer in range(2):
        heads = wiring.heads(layer)
        head_of = {int(n): h for h, row in enumerate(heads) for n in row}
        ids = wiring.groups[f"layer_{layer}"]
        src, dst = np.nonzero(wiring.adjacency[np.ix_(ids, ids)])
        assert all(
            head_of[int(ids[s])] == head_of[int(ids[d])]
            for s, d in zip(src, dst, strict=True)
        )
        # round(0.5 · 4) = 2 sources inside the head per neuron
        assert (np.count_nonzero(wiring.adjacency[np.ix_(ids, ids)], axis=0) == 2).all()


def test_language_densities_set_fan_ins():
    wiring = Language(
        12,
        20,
        3,
        2,
        embed_dim=8,
        input_density=0.5,
        ff_density=0.25,
        readout_density=0.1,
    ).build(8)
    adjacency = wiring.adjacency != 0

    assert (
        np.count_nonzero(wiring.sensory_adjacency, axis=0)[wiring.groups["layer_0"]]
        == 4
    ).all()
    for below, above in (("layer_0", "layer_1"), ("layer_1", "layer_2")):
        block = adjacency[np.ix_(wiring.groups[below], wiring.groups[above])]
        assert (block.sum(axis=0) == 5).all()
    assert (
        adjacency[np.ix_(wiring.groups["layer_2"], wiring.groups["logits"])].sum(axis=0)
        == 2
    ).all()
    assert wiring.validate() == []


def test_language_input_must_be_the_embed_dim():
    wiring = Language(30, 16, 2, 4, embed_dim=12)

    with pytest.raises(WiringError) as error:
        wiring.build(16)
    assert str(error.value).startswith(
        "wiring 'language' needs input_dim 12 (its embed_dim) but got 16"
    )
    assert Language(30, 16, 2, 4).build(16).input_dim == 16


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            dict(hidden_size=10, num_heads=4),
            "hidden_size 10 is not divisible by num_heads 4",
        ),
        (dict(num_layers=0), "num_layers must be at least 1"),
        (dict(vocab_size=-3), "vocab_size must be at least 1"),
        (dict(num_heads=2.0), "num_heads must be an integer"),
        (
            dict(recurrent_density=0.0),
            r"recurrent_density must be a number in \(0, 1\]",
        ),
        (dict(excitatory=1.5), r"excitatory must be a number in \[0, 1\]"),
    ],
)
def test_language_rejects_bad_parameters_with_a_clear_error(kwargs, message):
    params = dict(vocab_size=8, hidden_size=8, num_layers=2, num_heads=2)
    params.update(kwargs)
    with pytest.raises(WiringError, match=message):
        Language(**params)


def test_language_config_round_trips_through_json():
    wiring = Language(9, 8, 2, 2, recurrent_density=0.5, seed=2).build(8)
    restored = Language.from_config(json.loads(json.dumps(wiring.config())))

    assert restored == wiring
    assert restored != Language(9, 8, 2, 2, recurrent_density=0.5, seed=3).build(8)


def test_token_encoder_adds_sinusoidal_positions_to_embeddings():
    encoder = TokenEncoder(vocab_size=7, embed_dim=6, max_length=10)
    tokens = mx.array([[3, 3, 0], [1, 2, 3]])

    features = encoder(tokens)
    assert features.shape == (2, 3, 6)
    table = np.array(encoder.embedding.weight)
    positions = np.array(features) - table[np.array(tokens)]
    t, i = 2, 1  # position 2, dims 2 and 3
    angle = t / 10000 ** (2 * i / 6)
    assert positions[0, t, 2] == pytest.approx(math.sin(angle), abs=1e-6)
    assert positions[1, t, 3] == pytest.approx(math.cos(angle), abs=1e-6)
    assert np.allclose(positions[0], positions[1], atol=1e-6)
    # the same token at two positions gets two different features
    assert not np.allclose(np.array(features[0, 0]), np.array(features[0, 1]))


def test_token_encoder_fixed_positions_are_not_parameters_learned_ones_are():
    fixed = TokenEncoder(7, 5, 4)
    learned = TokenEncoder(7, 5, 4, learned_positions=True)

    assert list(fixed.trainable_parameters()) == ["embedding"]
    assert sorted(learned.trainable_parameters()) == ["embedding", "positions"]
    assert learned(mx.array([2, 1])).shape == (2, 5)
    assert np.allclose(
        np.array(learned(mx.array([2]))), np.array(learned.embedding.weight[2:3])
    )


def test_token_encoder_rejects_long_float_and_badly_shaped_input():
    encoder = TokenEncoder(7, 4, max_length=3)

    with pytest.raises(WiringError, match="sequence of 4 tokens but max_length is 3"):
        encoder(mx.array([[1, 2, 3, 4]]))
    with pytest.raises(WiringError, match="integer token ids"):
        encoder(mx.array([[1.0, 2.0]]))
    with pytest.raises(WiringError, match=r"shape \(B, L\) or \(L,\)"):
        encoder(mx.zeros((1, 2, 3), dtype=mx.int32))
    with pytest.raises(WiringError, match="embed_dim must be a positive integer"):
        TokenEncoder(7, 0, 3)


def test_language_token_encoder_fits_the_wiring():
    wiring = Language(
        vocab_size=11, hidden_size=8, num_layers=1, num_heads=2, embed_dim=6
    )
    encoder = wiring.token_encoder(max_length=5)

    features = encoder(mx.array([[1, 10, 4]]))
    assert features.shape == (1, 3, 6)
    assert wiring.build(features.shape[-1]).input_dim == 6


def test_language_registers_through_its_entry_point():
    ours = [
        ep
        for ep in importlib.metadata.entry_points(group="ncp")
        if ep.name == "language"
    ]
    assert [ep.value for ep in ours] == ["ncp_wiring_language"]

    registered: list[type] = []
    ours[0].load().ncp_register_wirings(registered.append)
    assert registered == [Language]


def test_language_is_found_by_name_through_the_plugin_system():
    import ncp_core

    wiring = ncp_core.get_wiring(
        "language", vocab_size=6, hidden_size=4, num_layers=2, num_heads=2
    )
    infos = {info.name: info for info in ncp_core.list_wirings()}

    assert wiring == Language(6, 4, 2, 2)
    assert infos["language"].distribution == "ncp-wiring-language"


def test_language_doc_example_runs():
    namespace = run_doc_example("language")

    assert isinstance(namespace["wiring"], Language)
    vocab_size = len(namespace["vocab"])
    assert namespace["logits"].shape == namespace["expected_shape"]
    assert namespace["expected_shape"] == (1, len(namespace["text"]), vocab_size)
