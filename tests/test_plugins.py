"""The plugin system, over real distributions on a temporary sys.path entry.

Each fake plugin is a real module next to a real ``*.dist-info`` directory
(METADATA and entry_points.txt), found by ``importlib.metadata`` as pip's
installs are. The end-to-end tests install ``tests/fixture_plugins/ncp-wiring-ring``
with pip and drive it from fresh interpreters.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import numpy as np
import pytest

from ncp_core import plugins
from ncp_core.classic import AutoNCP
from ncp_core.data.dataset import SequenceDataset
from ncp_core.errors import (
    DataError,
    NCPPluginWarning,
    NCPWarning,
    PluginConflictError,
    PluginError,
    UnknownWiringError,
    WiringError,
)
from ncp_core.registry import FIRST_PARTY_FAMILIES
from ncp_core.wiring import Wiring

REPO = Path(__file__).resolve().parents[1]
RING = REPO / "tests" / "fixture_plugins" / "ncp-wiring-ring"


def chain_module(wiring: str, cls: str = "Chain", summary: str = "A chain.") -> str:
    """Source of a plugin module registering one wiring: a chain of neurons."""
    return textwrap.dedent(
        f'''
        import numpy as np

        from ncp_core import Wiring, hookimpl


        class {cls}(Wiring):
            """{summary}

            More text that is not the summary.
            """

            name = "{wiring}"

            def __init__(self, units: int, gain: int = 1, seed: int = 0) -> None:
                super().__init__(units, seed=seed)
                self.gain = gain
                neurons = np.arange(self.units)
                self.add_synapses(neurons[:-1], neurons[1:], 1)


        @hookimpl
        def ncp_register_wirings(register):
            register({cls})
        '''
    )


class FakeSite:
    """Writes plugin distributions into temporary ``sys.path`` entries."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = root
        self.monkeypatch = monkeypatch
        self.prefix = f"ncpfake{uuid.uuid4().hex[:8]}"
        self.plugin_names: list[str] = []
        self._dirs: set[Path] = set()

    def module(self, plugin: str) -> str:
        return f"{self.prefix}_{plugin}"

    def add(
        self,
        plugin: str,
        source: str,
        *,
        distribution: str | None = None,
        version: str = "1.0",
        declare: dict[str, list[str]] | None = None,
        directory: str = "site",
    ) -> str:
        """Install module ``<prefix>_<plugin>`` as distribution ``distribution``."""
        site = self.root / directory
        site.mkdir(exist_ok=True)
        module = self.module(plugin)
        (site / f"{module}.py").write_text(source)
        distribution = distribution or f"fake-{plugin}"
        info = site / f"{distribution.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n"
        )
        groups = {"ncp": {plugin: module}}
        for group, names in (declare or {}).items():
            groups[group] = {name: module for name in names}
        (info / "entry_points.txt").write_text(
            "".join(
                f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in points.items())
                for group, points in groups.items()
            )
        )
        if site not in self._dirs:
            self._dirs.add(site)
            self.monkeypatch.syspath_prepend(str(site))
        importlib.invalidate_caches()
        self.plugin_names.append(plugin)
        return module

    def isolate(self, **env: str) -> None:
        """Load only the fake plugins (unless ``env`` says otherwise)."""
        self.monkeypatch.setenv("NCP_PLUGINS", ",".join(self.plugin_names))
        for key, value in env.items():
            self.monkeypatch.setenv(key, value)
        plugins.reset()


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    for key in ("NCP_PLUGINS", "NCP_DISABLE_PLUGINS", "NCP_STRICT_PLUGINS"):
        monkeypatch.delenv(key, raising=False)
    plugins.reset()
    fake = FakeSite(tmp_path, monkeypatch)
    yield fake
    plugins.reset()
    for name in [m for m in sys.modules if m.startswith(fake.prefix)]:
        del sys.modules[name]


def plugin_info(name: str) -> plugins.PluginInfo:
    [info] = [p for p in plugins.list_plugins() if p.name == name]
    return info


# -- finding and loading ---------------------------------------------------------------


def test_a_plugin_is_found_through_its_entry_point_and_builds_its_wiring(site):
    module = site.add("alpha", chain_module("alpha_chain"), version="2.3")
    site.isolate()

    wiring = plugins.get_wiring("alpha_chain", units=4)

    assert type(wiring).__module__ == module
    assert wiring.adjacency[[0, 1, 2], [1, 2, 3]].tolist() == [1, 1, 1]
    assert wiring.synapse_count == 3
    info = plugin_info("alpha")
    assert info.status == "loaded"
    assert (info.distribution, info.version) == ("fake-alpha", "2.3")
    assert info.entry_point == f"alpha = {module}"
    assert info.location == str(site.root / "site" / f"{module}.py")
    assert info.hooks == ("ncp_register_wirings",)
    assert info.wirings == ("alpha_chain",)


def test_import_ncp_loads_no_plugin():
    code = (
        "import sys, ncp, ncp_core; ncp.__version__; "
        "prefixes = ('ncp_core.', 'ncp_wiring'); "
        "print(sorted(m for m in sys.modules if m.startswith(prefixes)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout

    assert "ncp_core.plugins" not in out
    assert "ncp_core.classic" not in out
    assert "ncp_wiring" not in out


def test_a_plugin_that_fails_to_import_is_recorded_and_the_others_keep_working(site):
    site.add("alpha", chain_module("alpha_chain"))
    site.add("broken", "import numpy\nimport no_such_module_here\n", version="0.4")
    site.isolate()

    with pytest.warns(NCPPluginWarning) as caught:
        wirings = {w.name for w in plugins.list_wirings()}

    message = str(caught[0].message)
    assert f"entry point 'broken = {site.module('broken')}'" in message
    assert "fake-broken 0.4" in message
    assert "No module named 'no_such_module_here'" in message
    info = plugin_info("broken")
    assert info.status == "failed"
    assert info.error.startswith("failed to import: ModuleNotFoundError")
    assert {"alpha_chain", "auto_ncp"} <= wirings
    assert plugins.get_wiring("alpha_chain", units=3).units == 3


def test_a_misspelled_hook_fails_the_plugin_and_names_the_right_hook(site):
    source = chain_module("typo_chain").replace(
        "def ncp_register_wirings", "def ncp_register_wiring"
    )
    site.add("typo", source)
    site.isolate()

    with pytest.warns(NCPPluginWarning, match="unknown hook 'ncp_register_wiring'"):
        info = plugin_info("typo")

    assert info.status == "failed"
    assert "did you mean 'ncp_register_wirings'?" in info.error
    assert "typo_chain" not in {w.name for w in plugins.list_wirings()}


def test_a_hook_function_without_hookimpl_is_reported(site):
    source = chain_module("bare_chain").replace("@hookimpl\n", "")
    site.add("bare", source)
    site.isolate()

    with pytest.warns(NCPPluginWarning):
        info = plugin_info("bare")

    assert info.status == "failed"
    assert "ncp_register_wirings is not marked" in info.error
    assert "@ncp_core.hookimpl" in info.error


def test_a_plugin_raising_in_its_hook_leaves_no_registration_behind(site):
    source = chain_module("half_chain") + textwrap.dedent(
        """
        @hookimpl
        def ncp_register_datasets(register):
            register("half_data", lambda: None)
            raise RuntimeError("the data files are missing")
        """
    )
    site.add("half", source)
    site.isolate()

    with pytest.warns(NCPPluginWarning, match="the data files are missing"):
        info = plugin_info("half")

    assert info.status == "failed"
    assert "failed in its hook ncp_register_datasets" in info.error
    with pytest.raises(UnknownWiringError):
        plugins.get_wiring("half_chain", units=3)
    assert "half_data" not in {d.name for d in plugins.list_datasets()}


def test_registering_something_that_is_not_a_wiring_fails_the_plugin(site):
    source = textwrap.dedent(
        """
        from ncp_core import hookimpl

        @hookimpl
        def ncp_register_wirings(register):
            register(dict)
        """
    )
    site.add("odd", source)
    site.isolate()

    with pytest.warns(NCPPluginWarning, match="expected a subclass of ncp_core.Wiring"):
        assert plugin_info("odd").status == "failed"


def test_strict_mode_turns_a_plugin_failure_into_an_error(site):
    site.add("broken", "raise ImportError('compiled for another Python')\n")
    site.isolate(NCP_STRICT_PLUGINS="1")

    with pytest.raises(PluginError, match="compiled for another Python") as raised:
        plugins.list_plugins()

    assert "NCP_STRICT_PLUGINS" in str(raised.value)
    assert "fake-broken 1.0" in str(raised.value)


# -- choosing which plugins load -------------------------------------------------------


def test_a_disabled_plugin_is_listed_as_blocked_and_never_imported(site):
    site.add("alpha", chain_module("alpha_chain"))
    site.add("beta", chain_module("beta_chain"))
    site.isolate(NCP_DISABLE_PLUGINS="beta")

    infos = {p.name: p for p in plugins.list_plugins()}

    assert infos["alpha"].status == "loaded"
    assert infos["beta"].status == "blocked"
    assert infos["beta"].error == "blocked by NCP_DISABLE_PLUGINS"
    assert site.module("beta") not in sys.modules
    with pytest.raises(UnknownWiringError, match="is blocked"):
        plugins.get_wiring("beta:beta_chain", units=3)


def test_a_plugin_can_be_disabled_by_its_distribution_name(site):
    site.add("beta", chain_module("beta_chain"), distribution="ncp-wiring-beta")
    site.isolate(NCP_DISABLE_PLUGINS="ncp_wiring_beta")

    assert plugin_info("beta").status == "blocked"


def test_the_allow_list_loads_only_the_named_plugins_and_always_the_builtins(site):
    site.add("alpha", chain_module("alpha_chain"))
    site.add("beta", chain_module("beta_chain"))
    site.isolate(NCP_PLUGINS="alpha")

    infos = {p.name: p for p in plugins.list_plugins()}

    assert infos["alpha"].status == "loaded"
    assert infos["beta"].status == "blocked"
    assert infos["beta"].error == "not listed in NCP_PLUGINS"
    assert infos["classic"].status == "loaded"
    assert plugins.get_wiring("auto_ncp", units=8, output_size=2).units == 8


def test_an_empty_allow_list_loads_only_the_builtins(site):
    site.add("alpha", chain_module("alpha_chain"))
    site.isolate(NCP_PLUGINS="")

    loaded = {p.name for p in plugins.list_plugins() if p.status == "loaded"}

    assert "classic" in loaded
    assert loaded <= {"classic", "bundled"}
    assert site.module("alpha") not in sys.modules


def test_the_allow_list_warns_about_a_name_no_plugin_has(site):
    site.add("alpha", chain_module("alpha_chain"))
    site.isolate(NCP_PLUGINS="alpha,alpah")

    with pytest.warns(NCPPluginWarning, match="NCP_PLUGINS names 'alpah'"):
        plugins.list_plugins()


def test_reset_reads_the_environment_again(site, monkeypatch):
    site.add("alpha", chain_module("alpha_chain"))
    site.isolate(NCP_DISABLE_PLUGINS="alpha")
    assert plugin_info("alpha").status == "blocked"

    monkeypatch.delenv("NCP_DISABLE_PLUGINS")
    plugins.reset()

    assert plugin_info("alpha").status == "loaded"


# -- duplicates ------------------------------------------------------------------------


def test_the_same_distribution_found_twice_is_loaded_once_from_the_first_path(site):
    site.add("dup", chain_module("dup_chain"), version="1.0", directory="second")
    site.plugin_names.pop()
    module = site.add(
        "dup", chain_module("dup_chain"), version="2.0", directory="first"
    )
    site.isolate()

    infos = [p for p in plugins.list_plugins() if p.name == "dup"]

    assert len(infos) == 1
    assert infos[0].version == "2.0"
    assert infos[0].location == str(site.root / "first" / f"{module}.py")
    assert [w.status for w in plugins.list_wirings() if w.name == "dup_chain"] == ["ok"]


def test_two_distributions_with_one_plugin_name_load_only_the_first(site):
    site.add("twin", chain_module("twin_a"), distribution="fake-twin-a", directory="a")
    site.add("twin", chain_module("twin_b"), distribution="fake-twin-b", directory="b")
    site.isolate()

    with pytest.warns(NCPPluginWarning, match="plugin name 'twin' is taken"):
        infos = [p for p in plugins.list_plugins() if p.name == "twin"]

    assert [(p.distribution, p.status) for p in infos] == [
        ("fake-twin-b", "loaded"),
        ("fake-twin-a", "conflict"),
    ]
    assert "NCP_DISABLE_PLUGINS=fake-twin-a" in infos[1].error


def test_two_plugins_registering_one_name_raise_a_conflict_naming_both(site):
    site.add("alpha", chain_module("shared", cls="AlphaShared"), version="1.2")
    site.add("beta", chain_module("shared", cls="BetaShared"), version="3.4")
    site.add("gamma", chain_module("gamma_chain"))
    site.isolate()

    with pytest.raises(PluginConflictError) as raised:
        plugins.get_wiring("shared", units=3)

    message = str(raised.value)
    assert "'alpha' (fake-alpha 1.2)" in message
    assert "'beta' (fake-beta 3.4)" in message
    assert "'alpha:shared'" in message and "'beta:shared'" in message
    assert "NCP_DISABLE_PLUGINS" in message
    assert type(plugins.get_wiring("alpha:shared", units=3)).__name__ == "AlphaShared"
    assert type(plugins.get_wiring("beta:shared", units=3)).__name__ == "BetaShared"
    assert plugins.get_wiring("gamma_chain", units=3).synapse_count == 2
    statuses = {
        (w.plugin, w.status) for w in plugins.list_wirings() if w.name == "shared"
    }
    assert statuses == {("alpha", "conflict"), ("beta", "conflict")}
    assert plugin_info("alpha").status == "conflict"
    assert plugin_info("gamma").status == "loaded"


def test_a_plugin_never_replaces_a_builtin_wiring(site):
    site.add("evil", chain_module("auto_ncp", cls="FakeAutoNCP"), version="6.6")
    site.isolate()
    plugins.list_wirings()

    with pytest.warns(
        NCPPluginWarning, match=r"'evil' \(fake-evil 6.6\) also registers"
    ):
        wiring = plugins.get_wiring("auto_ncp", units=8, output_size=2)

    assert type(wiring) is AutoNCP
    assert type(plugins.get_wiring("evil:auto_ncp", units=3)).__name__ == "FakeAutoNCP"
    info = plugin_info("evil")
    assert info.status == "conflict"
    assert "also registered by 'classic' (ncp-core" in info.error


# -- looking up on demand --------------------------------------------------------------


def test_a_lookup_imports_only_the_plugin_that_declares_the_name(site):
    site.add(
        "alpha", chain_module("alpha_chain"), declare={"ncp.wirings": ["alpha_chain"]}
    )
    site.add(
        "beta", chain_module("beta_chain"), declare={"ncp.wirings": ["beta_chain"]}
    )
    site.isolate()

    plugins.get_wiring("alpha_chain", units=3)
    info = plugins.wiring_info("alpha_chain")

    assert site.module("alpha") in sys.modules
    assert site.module("beta") not in sys.modules
    assert [str(p) for p in info.parameters] == ["units", "gain=1", "seed=0"]
    assert (info.plugin, info.status) == ("alpha", "ok")
    plugins.list_wirings()
    assert site.module("beta") in sys.modules


def test_a_builtin_name_imports_no_undeclared_plugin(site):
    site.add("alpha", chain_module("alpha_chain"))
    site.isolate()

    plugins.get_wiring("auto_ncp", units=8, output_size=2)

    assert site.module("alpha") not in sys.modules


def test_a_plugin_declaring_a_builtin_name_is_imported_and_reported(site):
    site.add(
        "evil", chain_module("ncp", cls="FakeNCP"), declare={"ncp.wirings": ["ncp"]}
    )
    site.isolate()

    with pytest.warns(
        NCPPluginWarning, match="also registers the built-in wiring 'ncp'"
    ):
        plugins.get_wiring("fully_connected", units=2)
        wiring = plugins.get_wiring("ncp", **AUTO_NCP_SIZES)

    assert type(wiring).__module__ == "ncp_core.classic"


AUTO_NCP_SIZES = dict(
    inter_neurons=4,
    command_neurons=3,
    motor_neurons=2,
    sensory_fanout=2,
    inter_fanout=2,
    recurrent_command_synapses=3,
    motor_fanin=2,
)


def test_an_undeclared_name_is_still_found(site):
    site.add("alpha", chain_module("secret_chain"), declare={"ncp.wirings": ["other"]})
    site.isolate()

    assert plugins.get_wiring("secret_chain", units=3).units == 3


# -- get_wiring ------------------------------------------------------------------------


def test_an_unknown_wiring_lists_the_installed_ones_and_a_close_match(site):
    site.isolate(NCP_PLUGINS="")

    with pytest.raises(UnknownWiringError) as raised:
        plugins.get_wiring("auto_npc", units=8)

    message = str(raised.value)
    assert "unknown wiring 'auto_npc'" in message
    assert "Did you mean 'auto_ncp'?" in message
    assert "auto_ncp, fully_connected, ncp, random" in message


def first_party_hint(distribution: str) -> str:
    """The end of the unknown-wiring message for a family, with NCP_PLUGINS=""."""
    try:
        version = importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return f"pip install {distribution}"
    return (
        f"{distribution} {version}) may provide it but is blocked: "
        "not listed in NCP_PLUGINS."
    )


@pytest.mark.parametrize(
    ("name", "distribution"),
    [
        ("vision", "ncp-wiring-vision"),
        ("hierarchical", "ncp-wiring-multiscale"),
        ("cross_attention", "ncp-wiring-attention"),
        ("dynamic_routing", "ncp-wiring-routing"),
        ("meta", "ncp-wiring-meta"),
    ],
)
def test_a_first_party_family_that_is_not_loaded_names_its_distribution(
    site, name, distribution
):
    site.isolate(NCP_PLUGINS="")

    with pytest.raises(UnknownWiringError) as raised:
        plugins.get_wiring(name)

    assert str(raised.value).endswith(first_party_hint(distribution))


def test_a_missing_first_party_family_says_what_to_install(site):
    site.isolate()
    missing = [
        (name, distribution)
        for name, distribution in FIRST_PARTY_FAMILIES.items()
        if first_party_hint(distribution).startswith("pip install")
    ]
    if not missing:
        pytest.skip("every first-party family is installed in this environment")
    name, distribution = missing[0]

    with pytest.raises(UnknownWiringError) as raised:
        plugins.get_wiring(name, units=4)

    assert str(raised.value).endswith(
        f"{name!r} comes with the plugin distribution {distribution}, which is not "
        f"installed in this Python environment ({sys.prefix}): "
        f"pip install {distribution}"
    )


def test_a_blocked_first_party_plugin_is_named_instead_of_an_install_hint(site):
    site.add("vision", chain_module("other_chain"), distribution="ncp-wiring-vision")
    site.isolate(NCP_DISABLE_PLUGINS="vision")

    with pytest.raises(UnknownWiringError) as raised:
        plugins.get_wiring("vision")

    assert "blocked by NCP_DISABLE_PLUGINS" in str(raised.value)
    assert "pip install" not in str(raised.value)


def test_an_unknown_parameter_lists_the_accepted_ones_with_defaults(site):
    site.isolate(NCP_PLUGINS="")

    with pytest.raises(WiringError) as raised:
        plugins.get_wiring("auto_ncp", units=8, output_size=2, sparsity=0.3)

    assert str(raised.value) == (
        "wiring 'auto_ncp' has no parameter 'sparsity' (did you mean "
        "'sparsity_level'?); it accepts: units, output_size, sparsity_level=0.5, "
        "seed=22222"
    )


def test_a_missing_parameter_is_named(site):
    site.isolate(NCP_PLUGINS="")

    with pytest.raises(WiringError, match="needs the parameter output_size;"):
        plugins.get_wiring("auto_ncp", units=8)


def test_input_dim_builds_the_wiring(site):
    site.isolate(NCP_PLUGINS="")

    wiring = plugins.get_wiring("fully_connected", units=3, input_dim=5)

    assert wiring.input_dim == 5
    assert wiring.sensory_adjacency.shape == (5, 3)
    assert wiring.sensory_synapse_count == 15


def test_a_plugin_constructor_error_names_the_plugin(site):
    source = chain_module("fragile").replace(
        "super().__init__(units, seed=seed)",
        "super().__init__(units, seed=seed)\n        1 / 0",
    )
    site.add("fragile", source, version="0.9")
    site.isolate()

    with pytest.raises(
        WiringError, match=r"'fragile' \(fake-fragile 0.9\).*ZeroDivision"
    ):
        plugins.get_wiring("fragile", units=3)


def test_list_wirings_describes_each_wiring(site):
    site.add("alpha", chain_module("alpha_chain", summary="A chain of neurons."))
    site.isolate()

    records = {w.name: w for w in plugins.list_wirings()}

    chain = records["alpha_chain"]
    assert chain.summary == "A chain of neurons."
    assert [str(p) for p in chain.parameters] == ["units", "gain=1", "seed=0"]
    assert (chain.plugin, chain.distribution, chain.version) == (
        "alpha",
        "fake-alpha",
        "1.0",
    )
    auto = records["auto_ncp"]
    assert auto.plugin == "classic" and auto.distribution == "ncp-core" and auto.builtin
    assert auto.summary.startswith("An NCP whose layer sizes")
    assert json.loads(json.dumps(auto.as_dict()))["parameters"][2] == {
        "name": "sparsity_level",
        "required": False,
        "default": 0.5,
        "annotation": "float",
    }


# -- register_wiring -------------------------------------------------------------------


class Star(Wiring):
    """One hub neuron that every other neuron talks to, and back."""

    name = "star"

    def __init__(self, units: int) -> None:
        super().__init__(units)
        self.add_synapses(0, np.arange(1, self.units), 1)
        self.add_synapses(np.arange(1, self.units), 0, -1)


def test_register_wiring_works_as_a_decorator_and_records_plugin_local(site):
    site.isolate(NCP_PLUGINS="")

    returned = plugins.register_wiring(Star)
    wiring = plugins.get_wiring("star", units=4)

    assert returned is Star
    assert wiring.adjacency[0].tolist() == [0, 1, 1, 1]
    assert wiring.adjacency[:, 0].tolist() == [0, -1, -1, -1]
    [record] = [w for w in plugins.list_wirings() if w.name == "star"]
    assert (record.plugin, record.distribution) == ("local", None)
    assert plugin_info("local").wirings == ("star",)


def test_register_wiring_with_a_name_as_a_decorator_factory(site):
    site.isolate(NCP_PLUGINS="")

    @plugins.register_wiring(name="hub")
    class Hub(Star):
        """A star under another name."""

    assert type(plugins.get_wiring("hub", units=3)) is Hub


def test_registering_a_taken_name_needs_replace_from_the_same_source(site):
    site.isolate(NCP_PLUGINS="")
    plugins.register_wiring(Star)

    class OtherStar(Star):
        name = "star"

    plugins.register_wiring(Star)
    with pytest.raises(PluginConflictError, match="pass replace=True"):
        plugins.register_wiring(OtherStar)
    plugins.register_wiring(OtherStar, replace=True)
    assert type(plugins.get_wiring("star", units=3)) is OtherStar


def test_registering_a_name_a_plugin_owns_is_an_error(site):
    site.isolate(NCP_PLUGINS="")

    with pytest.raises(PluginConflictError, match=r"'classic' \(ncp-core"):
        plugins.register_wiring(Star, name="auto_ncp")
    with pytest.raises(PluginConflictError):
        plugins.register_wiring(Star, name="auto_ncp", replace=True)


def test_registering_a_class_without_a_name_or_a_bad_name_is_an_error(site):
    site.isolate(NCP_PLUGINS="")

    class Nameless(Wiring):
        pass

    with pytest.raises(WiringError, match="set the class attribute name"):
        plugins.register_wiring(Nameless)
    with pytest.raises(WiringError, match="invalid wiring name 'Has Space'"):
        plugins.register_wiring(Star, name="Has Space")


# -- saving and loading ----------------------------------------------------------------


def test_a_wiring_record_names_its_plugin_and_comes_back_exactly(site):
    site.isolate(NCP_PLUGINS="")
    wiring = plugins.get_wiring("auto_ncp", units=12, output_size=2, input_dim=3)
    wiring.remove_synapses(*np.argwhere(wiring.adjacency)[0])

    record = json.loads(json.dumps(plugins.wiring_record(wiring)))
    again = plugins.wiring_from_config(record)

    assert (record["plugin"], record["distribution"]) == ("classic", "ncp-core")
    assert record["version"] == plugins.__version__
    assert type(again) is AutoNCP
    assert np.array_equal(again.adjacency, wiring.adjacency)
    assert np.array_equal(again.sensory_adjacency, wiring.sensory_adjacency)


def test_a_wiring_whose_plugin_is_missing_loads_as_a_plain_wiring(site):
    site.isolate(NCP_PLUGINS="")
    record = plugins.wiring_record(plugins.get_wiring("fully_connected", units=3))
    record.update(name="ring", plugin="ring", distribution="ncp-wiring-ring")
    record["version"] = "0.3.1"

    with pytest.warns(NCPPluginWarning, match="pip install ncp-wiring-ring==0.3.1"):
        wiring = plugins.wiring_from_config(record)

    assert type(wiring) is Wiring
    assert wiring.name == "ring"
    assert wiring.adjacency.tolist() == record["adjacency"]
    assert plugins.wiring_record(wiring)["distribution"] == "ncp-wiring-ring"


def test_a_wiring_saved_with_another_version_loads_with_a_note(site):
    site.isolate(NCP_PLUGINS="")
    record = plugins.wiring_record(plugins.get_wiring("random", units=4))
    record["version"] = "0.0.1"

    with pytest.warns(NCPWarning, match="saved with ncp-core 0.0.1") as caught:
        wiring = plugins.wiring_from_config(record)

    assert not any(issubclass(w.category, NCPPluginWarning) for w in caught)
    assert wiring.adjacency.tolist() == record["adjacency"]


def test_a_bare_config_is_rebuilt_by_name(site):
    site.isolate(NCP_PLUGINS="")
    wiring = plugins.get_wiring("random", units=5, sparsity_level=0.4)

    again = plugins.wiring_from_config(wiring.config())

    assert again == wiring


# -- datasets --------------------------------------------------------------------------


def tiny_dataset(name: str = "tiny") -> SequenceDataset:
    x = np.arange(2 * 3 * 1, dtype=np.float32).reshape(2, 3, 1)
    return SequenceDataset(
        name=name,
        X_train=x,
        y_train=np.array([0, 1]),
        X_test=x,
        y_test=np.array([1, 0]),
        mask_train=np.ones((2, 3), bool),
        mask_test=np.ones((2, 3), bool),
    )


def test_a_registered_dataset_is_listed_and_loaded(site):
    site.isolate(NCP_PLUGINS="")

    plugins.register_dataset("tiny", tiny_dataset, summary="Two series of three steps")
    dataset = plugins.load_dataset("tiny")

    assert dataset.n_train == 2 and dataset.length == 3
    [info] = [d for d in plugins.list_datasets() if d.name == "tiny"]
    assert (info.summary, info.plugin, info.distribution) == (
        "Two series of three steps",
        "local",
        None,
    )


def test_a_plugin_registers_datasets_through_its_hook(site):
    source = textwrap.dedent(
        """
        import numpy as np
        from ncp_core import hookimpl
        from ncp_core.data.dataset import SequenceDataset

        def load():
            '''Four steps of ones.'''
            x = np.ones((1, 4, 2), np.float32)
            mask = np.ones((1, 4), bool)
            y = np.array([3])
            return SequenceDataset("ones", x, y, x, y, mask, mask)

        @hookimpl
        def ncp_register_datasets(register):
            register("ones", load)
        """
    )
    site.add("ones", source, version="0.2")
    site.isolate()

    dataset = plugins.load_dataset("ones")

    assert (dataset.channels, dataset.length, dataset.classes) == (2, 4, [3])
    [info] = [d for d in plugins.list_datasets() if d.name == "ones"]
    assert (info.summary, info.plugin, info.version) == (
        "Four steps of ones.",
        "ones",
        "0.2",
    )
    assert plugin_info("ones").datasets == ("ones",)


def test_a_dataset_file_path_is_read_from_the_file(site):
    site.isolate(NCP_PLUGINS="")
    path = REPO / "ncp_core" / "data" / "bundled" / "ItalyPowerDemand_TRAIN.ts.gz"

    dataset = plugins.load_dataset(str(path))

    assert (dataset.n_train, dataset.n_test, dataset.length) == (67, 1029, 24)


def test_an_unknown_dataset_lists_the_registered_ones(site):
    site.isolate(NCP_PLUGINS="")
    plugins.register_dataset("tiny", tiny_dataset)

    with pytest.raises(DataError) as raised:
        plugins.load_dataset("tiyn")

    message = str(raised.value)
    assert "unknown dataset 'tiyn'. Did you mean 'tiny'?" in message
    assert ".npz or .csv file" in message


def test_a_loader_returning_something_else_is_a_data_error(site):
    site.isolate(NCP_PLUGINS="")
    plugins.register_dataset("wrong", lambda: [1, 2, 3])

    with pytest.raises(DataError, match="returned list, expected a SequenceDataset"):
        plugins.load_dataset("wrong")


# -- end to end: a real distribution installed with pip --------------------------------


def run_python(args, extra_path=(), **env):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("NCP_")}
    environ["PYTHONPATH"] = os.pathsep.join([*map(str, extra_path), str(REPO)])
    environ.update(env)
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,
    )


@pytest.fixture(scope="module")
def ring_site(tmp_path_factory):
    """``ncp-wiring-ring`` installed by pip into a ``--target`` directory."""
    if shutil.which("pip") is None and importlib.util.find_spec("pip") is None:
        pytest.skip("pip is not available")
    root = tmp_path_factory.mktemp("ring")
    source = root / "src"
    shutil.copytree(RING, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    target = root / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--quiet",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    return source, target


def test_the_installed_ring_plugin_is_listed_by_ncp_plugins(ring_site):
    _, target = ring_site

    result = run_python(["-m", "ncp_core.cli", "plugins", "--json"], [target])

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["python"] == sys.executable
    [ring] = [p for p in report["plugins"] if p["name"] == "ring"]
    assert ring["status"] == "loaded"
    assert (ring["distribution"], ring["version"]) == ("ncp-wiring-ring", "0.1.0")
    assert ring["location"] == str(target / "ncp_wiring_ring" / "__init__.py")
    assert ring["wirings"] == ["ring"]


def test_ncp_show_builds_the_installed_ring_wiring(ring_site):
    _, target = ring_site

    result = run_python(
        [
            "-m",
            "ncp_core.cli",
            "show",
            "ring",
            "-p",
            "units=8",
            "-p",
            "reach=2",
            "--input-dim",
            "3",
            "--json",
        ],
        [target],
    )

    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert (shown["plugin"], shown["distribution"]) == ("ring", "ncp-wiring-ring")
    assert (shown["units"], shown["synapses"], shown["excitatory"]) == (8, 16, 16)
    assert shown["sensory_synapses"] == 6
    assert shown["groups"] == {"motor": 1, "inter": 7}
    assert shown["problems"] == []


def test_the_ring_plugins_own_tests_pass_against_the_installed_copy(ring_site):
    source, target = ring_site

    result = run_python(
        ["-m", "pytest", "-q", "-p", "no:cacheprovider", str(source / "tests")],
        [target],
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout


def test_a_ring_saved_with_the_plugin_loads_without_it_and_says_what_is_missing(
    ring_site, tmp_path
):
    _, target = ring_site
    saved = tmp_path / "ring.json"
    save = (
        "import json, sys, ncp_core.plugins as p; "
        "w = p.get_wiring('ring', units=6, input_dim=2); "
        f"json.dump(p.wiring_record(w), open({str(saved)!r}, 'w'))"
    )
    assert run_python(["-c", save], [target]).returncode == 0
    load = (
        "import json, warnings, ncp_core.plugins as p; "
        "warnings.simplefilter('always'); "
        f"w = p.wiring_from_config(json.load(open({str(saved)!r}))); "
        "print(type(w).__name__, w.name, w.synapse_count, w.sensory_synapse_count)"
    )

    result = run_python(["-c", load])

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["Wiring", "ring", "6", "4"]
    assert "NCPPluginWarning" in result.stderr
    assert "pip install ncp-wiring-ring==0.1.0" in result.stderr


def test_with_no_plugin_the_classic_wirings_work_and_vision_says_what_to_install():
    code = (
        "import ncp\n"
        "w = ncp.get_wiring('auto_ncp', units=10, output_size=2, input_dim=4)\n"
        "print(w.units, w.input_dim, len(w.validate()))\n"
        "try:\n"
        "    ncp.get_wiring('vision')\n"
        "except ncp.UnknownWiringError as e:\n"
        "    print(e)\n"
    )

    result = run_python(["-c", code], NCP_PLUGINS="")

    assert result.returncode == 0, result.stderr
    first, message = result.stdout.splitlines()
    assert first == "10 4 0"
    assert "unknown wiring 'vision'" in message
    assert message.endswith(first_party_hint("ncp-wiring-vision"))


# -- the documentation quotes the fixture ----------------------------------------------


def test_docs_plugins_md_quotes_the_ring_fixture_files_exactly():
    text = (REPO / "docs" / "plugins.md").read_text()
    blocks = re.findall(r"<!-- file: (\S+) -->\n```\w*\n(.*?)```", text, re.DOTALL)

    assert {name for name, _ in blocks} == {
        "pyproject.toml",
        "ncp_wiring_ring/__init__.py",
        "tests/test_ring.py",
    }
    for name, quoted in blocks:
        assert quoted == (RING / name).read_text(), name
