import numpy as np
import pytest
from ncp_wiring_ring import Ring

import ncp
from ncp_core.plugins import reset, wiring_from_config, wiring_record


@pytest.fixture(autouse=True)
def fresh_plugins():
    reset()
    yield
    reset()


def test_each_neuron_excites_the_next_reach_neurons():
    ring = Ring(6, reach=2)

    sources, targets = np.nonzero(ring.adjacency)
    expected = {(i, (i + k) % 6) for i in range(6) for k in (1, 2)}
    assert set(zip(sources.tolist(), targets.tolist(), strict=True)) == expected
    assert np.all(ring.adjacency[sources, targets] == 1)


def test_each_input_reaches_sensory_fanout_neurons():
    ring = Ring(8, sensory_fanout=3).build(4)

    assert np.count_nonzero(ring.sensory_adjacency, axis=1).tolist() == [3, 3, 3, 3]


def test_ncp_finds_the_ring_through_its_entry_point():
    wiring = ncp.get_wiring("ring", units=8, reach=3)

    assert type(wiring) is Ring
    assert wiring.synapse_count == 8 * 3
    [info] = [p for p in ncp.list_plugins() if p.name == "ring"]
    assert (info.status, info.distribution) == ("loaded", "ncp-wiring-ring")


def test_a_saved_ring_comes_back_with_the_same_synapses():
    ring = ncp.get_wiring("ring", units=8, input_dim=3)

    record = wiring_record(ring)
    again = wiring_from_config(record)

    assert record["plugin"] == "ring"
    assert record["distribution"] == "ncp-wiring-ring"
    assert type(again) is Ring
    assert np.array_equal(again.sensory_adjacency, ring.sensory_adjacency)
