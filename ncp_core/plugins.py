"""The plugin system: find plugins, load them on demand, look wirings up by name.

A plugin is a module named by an entry point in the ``ncp`` group; the entry
point's name is the plugin's short name. It implements the hooks of
:mod:`ncp_core.hookspecs`, and each ``register(...)`` call it makes puts a
wiring class or a dataset loader behind a name. The core's own wirings and
datasets come the same way, from the built-in plugins ``classic``
(:mod:`ncp_core.classic`) and ``bundled`` (:mod:`ncp_core.data.bundled`).

Loading is lazy and per plugin:

- ``import ncp`` loads nothing; the first look-up reads the installed
  distributions' entry points (metadata only) and imports the built-ins.
- Looking a name up imports only the plugins that may provide it: none for a
  built-in name; otherwise those that *declare* the name (below) and those
  that declare nothing. :func:`list_wirings`, :func:`list_datasets` and
  :func:`list_plugins` import every plugin.
- A distribution may declare the names it provides, as entry points in the
  groups ``ncp.wirings`` and ``ncp.datasets`` (name = the wiring or dataset
  name, value = the plugin module). A distribution that declares anything is
  taken to declare everything it registers; a name it registers without
  declaring is still found, but only once something else imported it.
- ``"plugin:name"`` asks one plugin for one name and imports only that one.

A plugin that fails to import, raises inside a hook, implements no hook or a
hook that does not exist, is recorded as failed and skipped with an
:class:`~ncp_core.errors.NCPPluginWarning`; the others keep working.

Environment variables, read when the plugins are first needed (and again
after :func:`reset`):

- ``NCP_DISABLE_PLUGINS=a,b``: never import these plugins (plugin or
  distribution names).
- ``NCP_PLUGINS=a,b``: import only these; ``NCP_PLUGINS=""`` imports none.
  The built-in plugins always load.
- ``NCP_STRICT_PLUGINS=1``: a failing plugin raises
  :class:`~ncp_core.errors.PluginError` instead of warning.

Two plugins registering one name are both recorded; asking for that name
raises :class:`~ncp_core.errors.PluginConflictError` naming both, while
``"plugin:name"`` picks one. A plugin never replaces a built-in wiring: the
built-in one is returned, with a warning naming the plugin.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata as metadata
import importlib.util
import logging
import os
import re
import sys
import threading
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar, overload

import pluggy

from ncp_core import __version__, hookspecs
from ncp_core.errors import (
    DataError,
    NCPError,
    NCPPluginWarning,
    NCPWarning,
    PluginConflictError,
    PluginError,
    UnknownWiringError,
    WiringError,
)
from ncp_core.registry import (
    CORE_DISTRIBUTION,
    FIRST_PARTY_FAMILIES,
    LOCAL_PLUGIN,
    DatasetInfo,
    Kind,
    ParameterInfo,
    PluginInfo,
    PluginStatus,
    Registration,
    Registry,
    WiringInfo,
    check_name,
    summary_line,
    wiring_parameters,
)
from ncp_core.wiring import Wiring

if TYPE_CHECKING:
    from ncp_core.data.dataset import SequenceDataset

__all__ = [
    "BUILTIN_PLUGINS",
    "DECLARATION_GROUPS",
    "ENTRY_POINT_GROUP",
    "DatasetInfo",
    "ParameterInfo",
    "PluginInfo",
    "PluginSettings",
    "WiringInfo",
    "get_wiring",
    "list_datasets",
    "list_plugins",
    "list_wirings",
    "load_dataset",
    "plugin_settings",
    "register_dataset",
    "register_wiring",
    "reset",
    "wiring_from_config",
    "wiring_info",
    "wiring_record",
]

ENTRY_POINT_GROUP: Final = "ncp"
"""Entry-point group naming plugin modules."""

DECLARATION_GROUPS: Final[Mapping[Kind, str]] = {
    "wiring": "ncp.wirings",
    "dataset": "ncp.datasets",
}
"""Optional entry-point groups in which a distribution declares its names."""

BUILTIN_PLUGINS: Final[tuple[tuple[str, str], ...]] = (
    ("classic", "ncp_core.classic"),
    ("bundled", "ncp_core.data.bundled"),
)
"""Plugin name and module of the core's own plugins, loaded before any other."""

_OPTIONAL_BUILTINS: Final = frozenset({"ncp_core.data.bundled"})

_HOOKS: Final = ("ncp_register_wirings", "ncp_register_datasets")

_PROVENANCE_ATTRIBUTE: Final = "_ncp_provenance"

_KIND_PLURAL: Final[Mapping[Kind, str]] = {"wiring": "wirings", "dataset": "datasets"}

logger = logging.getLogger(__name__)

W = TypeVar("W", bound=Wiring)
LoaderT = TypeVar("LoaderT", bound=Callable[[], Any])


def _normalize(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _names_match(names: Iterable[str], plugin: str, distribution: str | None) -> bool:
    """Whether ``names`` holds the plugin's name or its distribution's name."""
    wanted = _normalize(distribution) if distribution else None
    return any(n == plugin or _normalize(n) == wanted for n in names)


def _env_names(value: str) -> frozenset[str]:
    return frozenset(part.strip() for part in value.split(",") if part.strip())


@dataclass(frozen=True)
class PluginSettings:
    """The plugin switches, as read from the environment.

    Attributes:
        only: ``NCP_PLUGINS``: the plugins to load, or ``None`` for all.
        disabled: ``NCP_DISABLE_PLUGINS``: plugins never to load.
        strict: ``NCP_STRICT_PLUGINS``: failures raise instead of warning.
    """

    only: frozenset[str] | None = None
    disabled: frozenset[str] = frozenset()
    strict: bool = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> PluginSettings:
        environ = os.environ if environ is None else environ
        only = environ.get("NCP_PLUGINS")
        strict = environ.get("NCP_STRICT_PLUGINS", "").strip().lower()
        return cls(
            only=None if only is None else _env_names(only),
            disabled=_env_names(environ.get("NCP_DISABLE_PLUGINS", "")),
            strict=strict not in ("", "0", "false", "no", "off"),
        )

    def block_reason(self, name: str, distribution: str | None) -> str | None:
        """Why a plugin may not load, or ``None`` if it may."""
        if _names_match(self.disabled, name, distribution):
            return "blocked by NCP_DISABLE_PLUGINS"
        if self.only is not None and not _names_match(self.only, name, distribution):
            return "not listed in NCP_PLUGINS"
        return None

    def as_dict(self) -> dict[str, Any]:
        return {
            "NCP_PLUGINS": None if self.only is None else sorted(self.only),
            "NCP_DISABLE_PLUGINS": sorted(self.disabled),
            "NCP_STRICT_PLUGINS": self.strict,
        }


@dataclass(eq=False)
class _PluginState:
    """What is known of one plugin, before and after it is imported."""

    name: str
    module: str
    builtin: bool
    distribution: str | None
    version: str | None
    entry_point: metadata.EntryPoint | None = None
    dist_location: str | None = None
    declared: Mapping[Kind, frozenset[str]] | None = None
    status: PluginStatus = "pending"
    error: str | None = None
    plugin: object = None
    location: str | None = None
    hooks: tuple[str, ...] = ()
    registrations: list[Registration] = field(default_factory=list)

    def describe(self) -> str:
        """``'name' (entry point 'name = module' in dist version)`` for messages."""
        if self.builtin:
            where = f"built into {CORE_DISTRIBUTION} {self.version}"
        elif self.entry_point is not None:
            where = (
                f"entry point '{self.entry_point.name} = {self.entry_point.value}' "
                f"in {self.distribution} {self.version}"
            )
        else:
            where = "registered in this program"
        return f"{self.name!r} ({where})"

    def declares(self, kind: Kind, name: str) -> bool:
        return self.declared is not None and name in self.declared[kind]

    def provided(self, kind: Kind) -> tuple[str, ...]:
        return tuple(r.name for r in self.registrations if r.kind == kind)


class _Collector:
    """The ``register`` callables handed to one plugin's hooks.

    Registrations are collected and committed only if every hook of the
    plugin succeeds, so a plugin that fails halfway leaves nothing behind.
    """

    def __init__(self, state: _PluginState) -> None:
        self.state = state
        self.registrations: list[Registration] = []

    def wiring(self, cls: type[Wiring], name: str | None = None) -> None:
        s = self.state
        self._add(
            _wiring_registration(
                cls, name, s.name, s.distribution, s.version, builtin=s.builtin
            )
        )

    def dataset(self, name: str, loader: Callable[[], Any], summary: str = "") -> None:
        s = self.state
        self._add(
            _dataset_registration(
                name, loader, summary, s.name, s.distribution, s.version, s.builtin
            )
        )

    def _add(self, registration: Registration) -> None:
        for earlier in self.registrations:
            if earlier.kind == registration.kind and earlier.name == registration.name:
                if earlier.target is registration.target:
                    return
                raise PluginError(
                    f"{registration.kind} name {registration.name!r} is registered "
                    f"twice, for {earlier.target!r} and {registration.target!r}; "
                    "give each its own name"
                )
        self.registrations.append(registration)


def _wiring_registration(
    cls: Any,
    name: str | None,
    plugin: str,
    distribution: str | None,
    version: str | None,
    builtin: bool,
) -> Registration:
    if not (isinstance(cls, type) and issubclass(cls, Wiring)):
        raise WiringError(
            f"cannot register {cls!r} as a wiring: expected a subclass of "
            "ncp_core.Wiring"
        )
    if name is None:
        name = cls.name
        if name == Wiring.name:
            raise WiringError(
                f"wiring class {cls.__qualname__} has no registry name: set the "
                "class attribute name = '...' or pass register(cls, name='...')"
            )
    return Registration(
        kind="wiring",
        name=check_name("wiring", name),
        target=cls,
        summary=summary_line(cls),
        plugin=plugin,
        distribution=distribution,
        version=version,
        builtin=builtin,
    )


def _dataset_registration(
    name: Any,
    loader: Any,
    summary: Any,
    plugin: str,
    distribution: str | None,
    version: str | None,
    builtin: bool,
) -> Registration:
    name = check_name("dataset", name)
    if not callable(loader):
        raise DataError(
            f"cannot register dataset {name!r}: its loader {loader!r} is not "
            "callable; pass a function that takes no arguments and returns a "
            "SequenceDataset"
        )
    if not isinstance(summary, str):
        raise DataError(
            f"the summary of dataset {name!r} must be a string, got {summary!r}"
        )
    return Registration(
        kind="dataset",
        name=name,
        target=loader,
        summary=summary.strip() or summary_line(loader),
        plugin=plugin,
        distribution=distribution,
        version=version,
        builtin=builtin,
    )


def _warn(message: str, category: type[Warning]) -> None:
    """Warn with the stack level of the first caller outside this module."""
    frame = sys._getframe(1)
    level = 2
    while frame.f_back is not None and frame.f_globals.get("__name__") == __name__:
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)


def _distribution_name(dist: metadata.Distribution) -> str | None:
    try:
        name = dist.metadata["Name"]
    except (KeyError, OSError):
        return None
    return name if isinstance(name, str) and name else None


def _module_location(module_name: str) -> str | None:
    module = sys.modules.get(module_name)
    location = getattr(module, "__file__", None)
    return str(location) if location else None


def _builtin_present(module: str) -> bool:
    """Whether an optional built-in module exists as a real (not namespace) module."""
    try:
        spec = importlib.util.find_spec(module)
    except ModuleNotFoundError:
        return False
    except Exception:
        # Present but broken: loading it will record the error.
        return True
    return spec is not None and spec.origin not in (None, "namespace")


class _PluginManager:
    """Finds, loads and indexes the plugins; one per process, see :func:`reset`."""

    def __init__(self, settings: PluginSettings) -> None:
        self.settings = settings
        self.registry = Registry()
        self.plugins: dict[str, _PluginState] = {}
        self.name_clashes: list[_PluginState] = []
        self.local = _PluginState(
            name=LOCAL_PLUGIN,
            module="",
            builtin=False,
            distribution=None,
            version=None,
            status="loaded",
        )
        self._pluggy = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self._pluggy.add_hookspecs(hookspecs)
        self._lock = threading.RLock()
        self._found = False
        self._loading: set[str] = set()

    # -- finding -----------------------------------------------------------

    def start(self) -> None:
        """Read the entry points (once) and load the built-in plugins."""
        with self._lock:
            if not self._found:
                # Built afresh until it completes: in strict mode a clash
                # raises halfway, and the next look-up must raise again.
                self.plugins = {}
                self.name_clashes = []
                self._add_builtins()
                self._discover()
                self._found = True
                self._check_allow_list()
            for state in list(self.plugins.values()):
                if state.builtin:
                    self._load(state)

    def _add_builtins(self) -> None:
        for name, module in BUILTIN_PLUGINS:
            if module in _OPTIONAL_BUILTINS and not _builtin_present(module):
                continue
            self.plugins[name] = _PluginState(
                name=name,
                module=module,
                builtin=True,
                distribution=CORE_DISTRIBUTION,
                version=__version__,
            )

    def _discover(self) -> None:
        builtin = {s.module: s for s in self.plugins.values() if s.builtin}
        seen: dict[str, str] = {}
        for dist in metadata.distributions():
            dist_name = _distribution_name(dist)
            if dist_name is None:
                continue
            location = str(dist.locate_file(""))
            key = _normalize(dist_name)
            if key in seen:
                # The first copy on sys.path is the one Python imports.
                logger.debug(
                    "distribution %s at %s is shadowed by the copy at %s",
                    dist_name,
                    location,
                    seen[key],
                )
                continue
            seen[key] = location
            try:
                entry_points = list(dist.entry_points)
            except Exception as error:
                logger.warning(
                    "cannot read the entry points of %s: %s", dist_name, error
                )
                continue
            plugin_points = [ep for ep in entry_points if ep.group == ENTRY_POINT_GROUP]
            if not plugin_points:
                continue
            declared = self._declarations(entry_points)
            for ep in plugin_points:
                if ep.module in builtin:
                    builtin[ep.module].entry_point = ep
                    continue
                self._add_found(ep, dist_name, dist.version, location, declared)

    @staticmethod
    def _declarations(
        entry_points: Iterable[metadata.EntryPoint],
    ) -> Mapping[Kind, frozenset[str]] | None:
        points = list(entry_points)
        declared: dict[Kind, frozenset[str]] = {
            kind: frozenset(ep.name for ep in points if ep.group == group)
            for kind, group in DECLARATION_GROUPS.items()
        }
        return declared if any(declared.values()) else None

    def _add_found(
        self,
        ep: metadata.EntryPoint,
        distribution: str,
        version: str,
        location: str,
        declared: Mapping[Kind, frozenset[str]] | None,
    ) -> None:
        state = _PluginState(
            name=ep.name,
            module=ep.module,
            builtin=False,
            distribution=distribution,
            version=version,
            entry_point=ep,
            dist_location=location,
            declared=declared,
        )
        taken = self.plugins.get(ep.name)
        if taken is not None or ep.name == LOCAL_PLUGIN:
            owner = "reserved" if taken is None else f"taken by {taken.describe()}"
            state.status = "conflict"
            state.error = (
                f"plugin name {ep.name!r} is {owner}; this plugin is not loaded. "
                f"Uninstall one of them, or block one by its distribution name "
                f"with NCP_DISABLE_PLUGINS={distribution}"
            )
            self.name_clashes.append(state)
            self._report(state, state.error, None)
            return
        reason = self.settings.block_reason(ep.name, distribution)
        if reason is not None:
            state.status = "blocked"
            state.error = reason
        self.plugins[ep.name] = state

    def _check_allow_list(self) -> None:
        if not self.settings.only:
            return
        known = set(self.plugins)
        for state in self.plugins.values():
            if state.distribution:
                known.add(_normalize(state.distribution))
        for name in sorted(self.settings.only):
            if name not in known and _normalize(name) not in known:
                _warn(
                    f"NCP_PLUGINS names {name!r}, but no installed plugin has that "
                    f"name; installed plugins: {', '.join(sorted(self.plugins))}",
                    NCPPluginWarning,
                )

    # -- loading -----------------------------------------------------------

    def load_all(self) -> None:
        with self._lock:
            self.start()
            for state in list(self.plugins.values()):
                self._load(state)

    def _load(self, state: _PluginState) -> None:
        # A plugin that looks a name up while it is imported or registering
        # must not be loaded a second time.
        if state.status != "pending" or state.name in self._loading:
            return
        self._loading.add(state.name)
        try:
            self._import_and_register(state)
        finally:
            self._loading.discard(state.name)

    def _import_and_register(self, state: _PluginState) -> None:
        try:
            if state.builtin or state.entry_point is None:
                plugin: object = importlib.import_module(state.module)
            else:
                plugin = state.entry_point.load()
        except Exception as error:
            self._fail(state, "failed to import", error)
            return
        state.plugin = plugin
        state.location = _module_location(state.module)

        if self._pluggy.is_registered(plugin):
            other = self._pluggy.get_name(plugin)
            self._fail(
                state,
                f"points at the same object as plugin {other!r} and is skipped",
                None,
            )
            return
        try:
            self._pluggy.register(plugin, name=state.name)
        except Exception as error:
            self._forget(state)
            self._fail(state, "could not be registered", error)
            return

        problem = self._check_hooks(state)
        if problem is not None:
            self._forget(state)
            self._fail(state, problem, None)
            return

        collector = _Collector(state)
        registers: dict[str, Callable[..., None]] = {
            "ncp_register_wirings": collector.wiring,
            "ncp_register_datasets": collector.dataset,
        }
        others = [p for p in self._pluggy.get_plugins() if p is not plugin]
        for hook in state.hooks:
            caller = self._pluggy.subset_hook_caller(hook, others)
            try:
                caller(register=registers[hook])
            except Exception as error:
                self._forget(state)
                self._fail(state, f"failed in its hook {hook}", error)
                return

        for registration in collector.registrations:
            self.registry.add(registration)
        state.registrations = collector.registrations
        state.status = "loaded"
        self._check_declarations(state)
        logger.debug(
            "loaded plugin %s: %d registrations",
            state.describe(),
            len(state.registrations),
        )

    def _check_hooks(self, state: _PluginState) -> str | None:
        """Record the hooks a registered plugin implements; say what is wrong."""
        callers = self._pluggy.get_hookcallers(state.plugin) or []
        unknown = sorted(
            caller.name
            for caller in callers
            if not caller.has_spec()
            and any(
                impl.plugin is state.plugin and not impl.optionalhook
                for impl in caller.get_hookimpls()
            )
        )
        if unknown:
            guesses = difflib.get_close_matches(unknown[0], _HOOKS, n=1)
            hint = f" (did you mean {guesses[0]!r}?)" if guesses else ""
            return (
                f"implements unknown hook {unknown[0]!r}{hint}; the hooks are "
                f"{', '.join(_HOOKS)}"
            )
        state.hooks = tuple(h for h in _HOOKS if any(c.name == h for c in callers))
        if not state.hooks:
            unmarked = [h for h in _HOOKS if callable(getattr(state.plugin, h, None))]
            if unmarked:
                return (
                    f"implements no hook: {unmarked[0]} is not marked; decorate it "
                    "with @ncp_core.hookimpl"
                )
            return f"implements no hook; implement one of {', '.join(_HOOKS)}"
        return None

    def _check_declarations(self, state: _PluginState) -> None:
        if state.declared is None:
            return
        for registration in state.registrations:
            if registration.name not in state.declared[registration.kind]:
                group = DECLARATION_GROUPS[registration.kind]
                logger.warning(
                    "plugin %s registers %s %r without declaring it in its %r "
                    "entry points; it is only found once the plugin is imported",
                    state.describe(),
                    registration.kind,
                    registration.name,
                    group,
                )

    def _forget(self, state: _PluginState) -> None:
        if self._pluggy.get_name(state.plugin) == state.name:
            self._pluggy.unregister(state.plugin)

    def _fail(
        self, state: _PluginState, what: str, error: BaseException | None
    ) -> None:
        detail = "" if error is None else f": {type(error).__name__}: {error}"
        state.status = "failed"
        state.error = f"{what}{detail}"
        if state.builtin:
            advice = f"This is a bug in {CORE_DISTRIBUTION}; please report it."
        else:
            advice = (
                "The other plugins still work. Fix or uninstall "
                f"{state.distribution}, or block the plugin with "
                f"NCP_DISABLE_PLUGINS={state.name}."
            )
        message = f"ncp plugin {state.describe()} {what}{detail}. {advice}"
        self._report(state, message, error)

    def _report(
        self, state: _PluginState, message: str, error: BaseException | None
    ) -> None:
        logger.debug("plugin %s: %s", state.name, message, exc_info=error)
        if self.settings.strict:
            raise PluginError(f"{message} (NCP_STRICT_PLUGINS is set)") from error
        _warn(message, NCPPluginWarning)

    # -- looking up ----------------------------------------------------------

    def find(self, kind: Kind, name: str) -> Registration:
        """The registration ``name`` (or ``plugin:name``) resolves to."""
        if not isinstance(name, str):
            raise self._lookup_error(kind)(
                f"a {kind} name must be a string, got {name!r}"
            )
        with self._lock:
            self.start()
            if ":" in name:
                return self._find_qualified(kind, name)
            for state in self._candidates(kind, name):
                self._load(state)
            providers = self.registry.providers(kind, name)
            if not providers:
                # A plugin may register a name it did not declare.
                self.load_all()
                providers = self.registry.providers(kind, name)
            if not providers:
                raise self._unknown(kind, name)
            return self._choose(kind, name, providers)

    def _candidates(self, kind: Kind, name: str) -> list[_PluginState]:
        pending = [s for s in self.plugins.values() if s.status == "pending"]
        declaring = [s for s in pending if s.declares(kind, name)]
        if self.registry.has_builtin(kind, name):
            return declaring
        return declaring + [s for s in pending if s.declared is None]

    def _choose(
        self, kind: Kind, name: str, providers: list[Registration]
    ) -> Registration:
        builtin = [r for r in providers if r.builtin]
        if builtin:
            for other in providers:
                if not other.builtin:
                    _warn(
                        f"plugin {other.source} also registers the built-in {kind} "
                        f"{name!r}; the built-in one is used. Ask for "
                        f"{other.qualified_name!r} to use the plugin's, or block "
                        f"the plugin with NCP_DISABLE_PLUGINS={other.plugin}",
                        NCPPluginWarning,
                    )
            return builtin[0]
        if len(providers) > 1:
            sources = ", ".join(r.source for r in providers)
            qualified = " or ".join(repr(r.qualified_name) for r in providers)
            raise PluginConflictError(
                f"{kind} {name!r} is registered by {len(providers)} plugins: "
                f"{sources}. Choose one with a qualified name ({qualified}), or "
                f"block the others with NCP_DISABLE_PLUGINS="
                f"{','.join(r.plugin for r in providers[1:])}"
            )
        return providers[0]

    def _find_qualified(self, kind: Kind, qualified: str) -> Registration:
        plugin, _, name = qualified.partition(":")
        error = self._lookup_error(kind)
        state = self.local if plugin == LOCAL_PLUGIN else self.plugins.get(plugin)
        if state is None:
            installed = ", ".join(sorted(self.plugins))
            raise error(
                f"unknown {kind} {qualified!r}: no plugin is named {plugin!r}; "
                f"installed plugins: {installed}"
            )
        self._load(state)
        if state.status in ("failed", "blocked"):
            raise error(
                f"unknown {kind} {qualified!r}: plugin {state.describe()} is "
                f"{state.status}: {state.error}"
            )
        for registration in state.registrations:
            if registration.kind == kind and registration.name == name:
                return registration
        provided = ", ".join(state.provided(kind)) or "none"
        raise error(
            f"unknown {kind} {qualified!r}: plugin {plugin!r} provides no {kind} "
            f"{name!r}; its {_KIND_PLURAL[kind]}: {provided}"
        )

    @staticmethod
    def _lookup_error(kind: Kind) -> type[NCPError]:
        return DataError if kind == "dataset" else UnknownWiringError

    def _unknown(self, kind: Kind, name: str) -> NCPError:
        available = self.registry.names(kind)
        lines = [f"unknown {kind} {name!r}."]
        guesses = difflib.get_close_matches(name, available, n=3)
        if guesses:
            lines.append(f"Did you mean {' or '.join(map(repr, guesses))}?")
        lines.append(
            f"Installed {_KIND_PLURAL[kind]}: {', '.join(available) or 'none'}."
        )
        family = FIRST_PARTY_FAMILIES.get(name) if kind == "wiring" else None
        unavailable = [
            s
            for s in [*self.plugins.values(), *self.name_clashes]
            if s.status in ("failed", "blocked", "conflict")
            and (
                s.name == name
                or s.declares(kind, name)
                or (
                    family is not None
                    and s.distribution is not None
                    and _normalize(s.distribution) == family
                )
            )
        ]
        for state in unavailable:
            lines.append(
                f"Plugin {state.describe()} may provide it but is {state.status}: "
                f"{state.error}."
            )
        if family is not None and not unavailable:
            lines.append(
                f"{name!r} comes with the plugin distribution {family}, which is not "
                f"installed in this Python environment ({sys.prefix}): "
                f"pip install {family} (or, from a clone of ncp, "
                f"pip install ./plugins/{family})"
            )
        if kind == "dataset":
            lines.append("Or give the path of a .ts, .tsv, .npz or .csv file.")
        return self._lookup_error(kind)(" ".join(lines))

    def registration_of(self, kind: Kind, target: object) -> Registration | None:
        """The registration of a wiring class or loader, loading plugins if needed."""
        with self._lock:
            self.start()
            found = self.registry.of_target(kind, target)
            if not found:
                self.load_all()
                found = self.registry.of_target(kind, target)
        if not found:
            return None
        own_name = getattr(target, "name", None)
        return next((r for r in found if r.name == own_name), found[0])

    # -- registering from code -------------------------------------------------

    def add_local(self, registration: Registration, replace: bool) -> None:
        with self._lock:
            self.load_all()
            providers = self.registry.providers(registration.kind, registration.name)
            others = [r for r in providers if r.plugin != LOCAL_PLUGIN]
            if others:
                raise PluginConflictError(
                    f"{registration.kind} name {registration.name!r} is already "
                    f"registered by plugin {others[0].source}; register yours "
                    f"under another name, e.g. name='my_{registration.name}'"
                )
            for existing in providers:
                if existing.target is registration.target:
                    return
                if not replace:
                    raise PluginConflictError(
                        f"{registration.kind} name {registration.name!r} is "
                        f"already registered in this program, for "
                        f"{existing.target!r}; pass replace=True to replace it"
                    )
                self.registry.remove(existing)
                self.local.registrations.remove(existing)
            self.registry.add(registration)
            self.local.registrations.append(registration)

    # -- reporting -------------------------------------------------------------

    def plugin_infos(self) -> list[PluginInfo]:
        self.load_all()
        states = [*self.plugins.values(), *self.name_clashes]
        if self.local.registrations:
            states.append(self.local)
        return [self._info(state) for state in states]

    def _info(self, state: _PluginState) -> PluginInfo:
        status = state.status
        error = state.error
        clashes = [r for r in state.registrations if self.registry.status(r) != "ok"]
        if status == "loaded" and clashes:
            status = "conflict"
            error = "; ".join(
                f"{r.kind} {r.name!r} is also registered by "
                + ", ".join(
                    o.source
                    for o in self.registry.providers(r.kind, r.name)
                    if o is not r
                )
                for r in clashes
            )
        ep = state.entry_point
        return PluginInfo(
            name=state.name,
            status=status,
            builtin=state.builtin,
            distribution=state.distribution,
            version=state.version,
            entry_point=None if ep is None else f"{ep.name} = {ep.value}",
            location=state.location or state.dist_location,
            hooks=state.hooks,
            wirings=state.provided("wiring"),
            datasets=state.provided("dataset"),
            error=error,
        )


_manager_lock = threading.Lock()
_manager: _PluginManager | None = None


def _get_manager() -> _PluginManager:
    global _manager
    with _manager_lock:
        if _manager is None:
            _manager = _PluginManager(PluginSettings.from_environ())
        return _manager


def reset() -> None:
    """Forget every loaded plugin and registration; the next look-up starts over.

    The environment variables are read again at that point. Modules already
    imported stay in ``sys.modules``. Meant for tests.
    """
    global _manager
    with _manager_lock:
        _manager = None


# -- wirings -------------------------------------------------------------------


def _check_params(
    registration: Registration,
    parameters: tuple[ParameterInfo, ...],
    takes_any: bool,
    params: Mapping[str, Any],
) -> None:
    known = {p.name for p in parameters}
    accepted = ", ".join(str(p) for p in parameters) or "none"
    if not takes_any:
        for key in params:
            if key not in known:
                guesses = difflib.get_close_matches(key, known, n=1)
                hint = f" (did you mean {guesses[0]!r}?)" if guesses else ""
                raise WiringError(
                    f"wiring {registration.name!r} has no parameter {key!r}{hint}; "
                    f"it accepts: {accepted}"
                )
    missing = [p.name for p in parameters if p.required and p.name not in params]
    if missing:
        word = "parameter" if len(missing) == 1 else "parameters"
        raise WiringError(
            f"wiring {registration.name!r} needs the {word} "
            f"{', '.join(missing)}; it accepts: {accepted}"
        )


def get_wiring(name: str, /, **params: Any) -> Wiring:
    """Build the wiring registered as ``name`` with ``params``.

    Args:
        name (str): A registered wiring name (``"auto_ncp"``), or
            ``"plugin:name"`` to pick one plugin's wiring.
        **params: The wiring's constructor arguments. ``input_dim=S``, when
            the wiring has no such parameter, builds it for ``S`` inputs.

    Returns:
        Wiring: a new wiring.

    Raises:
        UnknownWiringError: no plugin provides ``name``; the message lists
            the installed wirings and, for a first-party family, what to
            install.
        PluginConflictError: two plugins registered ``name``.
        WiringError: an unknown or missing parameter (the message lists the
            accepted ones with their defaults), or the wiring rejected them.
    """
    registration = _get_manager().find("wiring", name)
    cls: type[Wiring] = registration.target
    parameters, takes_any = wiring_parameters(cls)
    input_dim = None
    if "input_dim" in params and all(p.name != "input_dim" for p in parameters):
        input_dim = params.pop("input_dim")
    _check_params(registration, parameters, takes_any, params)

    try:
        wiring = cls(**params)
    except NCPError:
        raise
    except Exception as error:
        given = ", ".join(f"{k}={v!r}" for k, v in params.items())
        raise WiringError(
            f"wiring {registration.name!r} from plugin {registration.source} "
            f"could not be built with ({given}): {type(error).__name__}: {error}"
        ) from error
    if input_dim is not None:
        wiring.build(input_dim)
    return wiring


def _wiring_info(manager: _PluginManager, registration: Registration) -> WiringInfo:
    parameters, _ = wiring_parameters(registration.target)
    return WiringInfo(
        name=registration.name,
        summary=registration.summary,
        parameters=parameters,
        plugin=registration.plugin,
        distribution=registration.distribution,
        version=registration.version,
        builtin=registration.builtin,
        status=manager.registry.status(registration),
        cls=registration.target,
    )


def list_wirings() -> list[WiringInfo]:
    """Every registered wiring, by name; imports every plugin.

    A name two plugins registered appears twice, with status ``"conflict"``.
    """
    manager = _get_manager()
    manager.load_all()
    return [_wiring_info(manager, r) for r in manager.registry.all("wiring")]


def wiring_info(name: str) -> WiringInfo:
    """The record of the wiring ``name`` resolves to, parameters included.

    Imports only the plugins the look-up needs, as :func:`get_wiring` does;
    raises the same errors for an unknown or contested name.
    """
    manager = _get_manager()
    return _wiring_info(manager, manager.find("wiring", name))


@overload
def register_wiring(
    cls: type[W], name: str | None = None, *, replace: bool = False
) -> type[W]: ...


@overload
def register_wiring(
    cls: None = None, name: str | None = None, *, replace: bool = False
) -> Callable[[type[W]], type[W]]: ...


def register_wiring(
    cls: type[W] | None = None, name: str | None = None, *, replace: bool = False
) -> type[W] | Callable[[type[W]], type[W]]:
    """Register a wiring class from code that is not a distribution.

    For a notebook or a test; installed plugins use the
    ``ncp_register_wirings`` hook instead. Works as a decorator, with or
    without arguments. The wiring is recorded as coming from plugin
    ``"local"``. Every plugin is imported first, to check the name is free.

    Args:
        cls (type[Wiring]): The wiring class.
        name (str, optional): Registry name. Default: ``cls.name``.
        replace (bool): Replace an earlier ``register_wiring`` of the same
            name. Default: ``False``.

    Returns:
        The class, unchanged.

    Raises:
        PluginConflictError: the name is registered by a plugin, or already
            by this program and ``replace`` is false.
    """
    if cls is None:

        def decorate(cls: type[W]) -> type[W]:
            return register_wiring(cls, name, replace=replace)

        return decorate
    manager = _get_manager()
    registration = _wiring_registration(
        cls, name, LOCAL_PLUGIN, None, None, builtin=False
    )
    manager.add_local(registration, replace)
    return cls


def wiring_record(wiring: Wiring) -> dict[str, Any]:
    """:meth:`Wiring.config` plus where the wiring comes from.

    Adds ``plugin``, ``distribution`` and ``version`` (``None`` for a class
    no plugin registered), and sets ``name`` to the registered name, so
    :func:`wiring_from_config` can find the class again, or say which
    distribution is missing.
    """
    if not isinstance(wiring, Wiring):
        raise WiringError(f"wiring_record expects a Wiring, got {wiring!r}")
    record = wiring.config()
    provenance = getattr(wiring, _PROVENANCE_ATTRIBUTE, None)
    if provenance is None:
        registration = _get_manager().registration_of("wiring", type(wiring))
        if registration is None:
            provenance = {"plugin": None, "distribution": None, "version": None}
        else:
            record["name"] = registration.name
            provenance = {
                "plugin": registration.plugin,
                "distribution": registration.distribution,
                "version": registration.version,
            }
    record.update(provenance)
    return record


def _plain_wiring(config: Mapping[str, Any], why: str) -> Wiring:
    distribution = config.get("distribution")
    version = config.get("version")
    advice = ""
    if distribution and distribution != CORE_DISTRIBUTION:
        pinned = f"{distribution}=={version}" if version else distribution
        advice = f" To rebuild it with its own class: pip install {pinned}"
    _warn(
        f"{why}; the wiring is loaded as a plain Wiring carrying its stored "
        f"synapses, groups and layers.{advice}",
        NCPPluginWarning,
    )
    try:
        wiring = Wiring.from_config(config)
    except KeyError as missing:
        raise WiringError(
            f"the wiring config has no {missing}; expected the dict that "
            "Wiring.config() or ncp_core.plugins.wiring_record() returns"
        ) from None
    setattr(
        wiring,
        _PROVENANCE_ATTRIBUTE,
        {
            "plugin": config.get("plugin"),
            "distribution": distribution,
            "version": version,
        },
    )
    return wiring


def wiring_from_config(config: Mapping[str, Any]) -> Wiring:
    """Rebuild a wiring from :func:`wiring_record` (or :meth:`Wiring.config`).

    - Plugin installed: the class's ``from_config`` runs, restoring the stored
      synapses exactly. If the installed version differs from the recorded
      one, an :class:`~ncp_core.errors.NCPWarning` says so.
    - Plugin missing, blocked or failed: a plain :class:`Wiring` with the
      stored structure, and an :class:`~ncp_core.errors.NCPPluginWarning`
      naming the distribution to install.

    Raises:
        PluginConflictError: the config names no plugin and two plugins
            register its name.
        WiringError: the config is not a wiring config.
    """
    if not isinstance(config, Mapping) or not isinstance(config.get("name"), str):
        raise WiringError(
            "expected the dict that Wiring.config() or wiring_record() returns, "
            f"with a 'name'; got {type(config).__name__}"
        )
    name: str = config["name"]
    plugin = config.get("plugin")
    distribution = config.get("distribution")
    version = config.get("version")
    origin = f"plugin {plugin!r}" if plugin else "no recorded plugin"
    if distribution:
        origin += f" from {distribution} {version}"

    try:
        registration = _get_manager().find(
            "wiring", f"{plugin}:{name}" if plugin else name
        )
    except UnknownWiringError as error:
        return _plain_wiring(
            config, f"wiring {name!r} was saved with {origin}, not available: {error}"
        )

    if version and registration.version and version != registration.version:
        _warn(
            f"wiring {name!r} was saved with {distribution} {version} and is "
            f"loaded with {registration.distribution} {registration.version}; "
            "its stored synapses are restored exactly",
            NCPWarning,
        )
    try:
        return registration.target.from_config(config)  # type: ignore[no-any-return]
    except Exception as error:
        return _plain_wiring(
            config,
            f"wiring {name!r} could not be rebuilt by {registration.source}: "
            f"{type(error).__name__}: {error}",
        )


# -- datasets ------------------------------------------------------------------


@overload
def register_dataset(
    name: str,
    loader: LoaderT,
    summary: str = "",
    *,
    replace: bool = False,
) -> LoaderT: ...


@overload
def register_dataset(
    name: str,
    loader: None = None,
    summary: str = "",
    *,
    replace: bool = False,
) -> Callable[[LoaderT], LoaderT]: ...


def register_dataset(
    name: str,
    loader: LoaderT | None = None,
    summary: str = "",
    *,
    replace: bool = False,
) -> LoaderT | Callable[[LoaderT], LoaderT]:
    """Register a dataset loader from code that is not a distribution.

    ``register_dataset("mine", loader)``, or ``@register_dataset("mine")``
    on the loader. The loader takes no arguments and returns a
    :class:`~ncp_core.data.dataset.SequenceDataset`; it runs when the
    dataset is loaded.

    Args:
        name (str): Dataset name.
        loader (callable): The loader.
        summary (str): One line describing the dataset. Default: the
            loader's docstring's first line.
        replace (bool): Replace an earlier ``register_dataset`` of the same
            name. Default: ``False``.
    """
    if loader is None:

        def decorate(loader: LoaderT) -> LoaderT:
            return register_dataset(name, loader, summary, replace=replace)

        return decorate
    registration = _dataset_registration(
        name, loader, summary, LOCAL_PLUGIN, None, None, builtin=False
    )
    _get_manager().add_local(registration, replace)
    return loader


def list_datasets() -> list[DatasetInfo]:
    """Every registered dataset, by name; imports every plugin."""
    manager = _get_manager()
    manager.load_all()
    return [
        DatasetInfo(
            name=r.name,
            summary=r.summary,
            plugin=r.plugin,
            distribution=r.distribution,
            version=r.version,
            builtin=r.builtin,
            status=manager.registry.status(r),
            loader=r.target,
        )
        for r in manager.registry.all("dataset")
    ]


def load_dataset(name_or_path: str | os.PathLike[str]) -> SequenceDataset:
    """Load a registered dataset, or read a dataset file.

    Args:
        name_or_path: A registered name (``"plugin:name"`` picks one plugin's),
            or the path of a dataset file, read by
            :func:`ncp_core.data.readers.read_dataset`. An existing path wins
            over a name.

    Raises:
        DataError: the name is unknown (the message lists the registered
            ones) or the loader failed.
    """
    from ncp_core.data.dataset import SequenceDataset

    if isinstance(name_or_path, os.PathLike) or (
        isinstance(name_or_path, str) and Path(name_or_path).exists()
    ):
        path = Path(name_or_path)
        if not path.exists():
            raise DataError(f"no dataset file at {str(path)!r}")
        from ncp_core.data.readers import read_dataset

        return read_dataset(path)

    registration = _get_manager().find("dataset", name_or_path)
    try:
        dataset = registration.target()
    except NCPError:
        raise
    except Exception as error:
        raise DataError(
            f"dataset {registration.name!r} from plugin {registration.source} "
            f"failed to load: {type(error).__name__}: {error}"
        ) from error
    if not isinstance(dataset, SequenceDataset):
        raise DataError(
            f"dataset {registration.name!r} from plugin {registration.source}: "
            f"its loader returned {type(dataset).__name__}, expected a "
            "SequenceDataset"
        )
    return dataset


# -- plugins -------------------------------------------------------------------


def list_plugins() -> list[PluginInfo]:
    """Every plugin found, with its status; imports every plugin not blocked.

    Built-in plugins come first, then the installed ones in ``sys.path``
    order, then (as ``"local"``) what this program registered itself.
    """
    return _get_manager().plugin_infos()


def plugin_settings() -> PluginSettings:
    """The plugin switches in effect (read when the plugins were first needed)."""
    return _get_manager().settings
