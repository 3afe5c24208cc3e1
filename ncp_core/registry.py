"""What the plugins registered: wiring classes and dataset loaders, by name.

The registry keeps every registration, including the ones that clash, so a
clash can be reported with both sides named. Which registration a name
resolves to is decided in :mod:`ncp_core.plugins`; this module only stores
and describes them.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Literal

from ncp_core.errors import DataError, WiringError
from ncp_core.wiring import Wiring

__all__ = [
    "CORE_DISTRIBUTION",
    "FIRST_PARTY_FAMILIES",
    "LOCAL_PLUGIN",
    "DatasetInfo",
    "ParameterInfo",
    "PluginInfo",
    "Registration",
    "Registry",
    "WiringInfo",
    "check_name",
    "wiring_parameters",
]

Kind = Literal["wiring", "dataset"]
RegistrationStatus = Literal["ok", "conflict", "ignored"]
PluginStatus = Literal["pending", "loaded", "failed", "blocked", "conflict"]

CORE_DISTRIBUTION: Final = "ncp-core"
"""Distribution of the built-in plugins."""

LOCAL_PLUGIN: Final = "local"
"""Plugin name recorded for :func:`ncp_core.register_wiring` calls."""

FIRST_PARTY_FAMILIES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "multiscale": "ncp-wiring-multiscale",
        "hierarchical": "ncp-wiring-multiscale",
        "attention": "ncp-wiring-attention",
        "cross_attention": "ncp-wiring-attention",
        "signal": "ncp-wiring-signal",
        "vision": "ncp-wiring-vision",
        "language": "ncp-wiring-language",
        "adaptive": "ncp-wiring-adaptive",
        "dynamic_routing": "ncp-wiring-routing",
        "meta": "ncp-wiring-meta",
    }
)
"""Wiring name → the first-party distribution that provides it.

Only used to tell a user what to install; the core never imports these.
"""

_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")


def check_name(kind: Kind, name: object) -> str:
    """Return ``name`` if it is a valid registry name.

    Raises:
        WiringError: for a bad wiring name; DataError for a bad dataset name.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        error = DataError if kind == "dataset" else WiringError
        raise error(
            f"invalid {kind} name {name!r}: use lower case letters, digits and "
            "underscores, starting with a letter (e.g. 'ring', 'auto_ncp')"
        )
    return name


def _jsonable(value: Any) -> Any:
    """``value`` if JSON can hold it, else its ``repr``."""
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value


@dataclass(frozen=True)
class ParameterInfo:
    """One constructor parameter of a wiring class.

    Attributes:
        name: Parameter name.
        required: Whether it has no default.
        default: The default (JSON-safe, or its ``repr``); ``None`` if required.
        annotation: The annotation as written, or ``None``.
    """

    name: str
    required: bool
    default: Any = None
    annotation: str | None = None

    def __str__(self) -> str:
        return self.name if self.required else f"{self.name}={self.default!r}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "required": self.required,
            "default": self.default,
            "annotation": self.annotation,
        }


def wiring_parameters(cls: type[Wiring]) -> tuple[tuple[ParameterInfo, ...], bool]:
    """The named constructor parameters of ``cls`` and whether it takes ``**kwargs``."""
    signature = inspect.signature(cls.__init__)
    parameters: list[ParameterInfo] = []
    takes_any = False
    for parameter in list(signature.parameters.values())[1:]:
        if parameter.kind is parameter.VAR_KEYWORD:
            takes_any = True
            continue
        if parameter.kind is parameter.VAR_POSITIONAL:
            continue
        annotation = parameter.annotation
        if annotation is parameter.empty:
            text = None
        elif isinstance(annotation, str):
            text = annotation
        else:
            text = inspect.formatannotation(annotation)
        required = parameter.default is parameter.empty
        parameters.append(
            ParameterInfo(
                name=parameter.name,
                required=required,
                default=None if required else _jsonable(parameter.default),
                annotation=text,
            )
        )
    return tuple(parameters), takes_any


def summary_line(obj: object) -> str:
    """First line of the object's own docstring (not an inherited one)."""
    doc = obj.__dict__.get("__doc__") if isinstance(obj, type) else obj.__doc__
    if not isinstance(doc, str):
        return ""
    lines = inspect.cleandoc(doc).splitlines()
    return lines[0].strip() if lines else ""


@dataclass(frozen=True)
class Registration:
    """One ``register(...)`` call: a name and what a plugin put behind it.

    ``target`` is the wiring class or the dataset loader.
    """

    kind: Kind
    name: str
    target: Any
    summary: str
    plugin: str
    distribution: str | None
    version: str | None
    builtin: bool

    @property
    def qualified_name(self) -> str:
        return f"{self.plugin}:{self.name}"

    @property
    def source(self) -> str:
        """``plugin (distribution version)`` for messages."""
        if self.distribution is None:
            return repr(self.plugin)
        return f"{self.plugin!r} ({self.distribution} {self.version})"


@dataclass(frozen=True)
class WiringInfo:
    """A registered wiring, as :func:`ncp_core.list_wirings` reports it.

    ``status`` is ``"ok"``; ``"conflict"`` when another plugin registered the
    same name (ask for ``"plugin:name"``); ``"ignored"`` when the name belongs
    to a built-in wiring, which wins.
    """

    name: str
    summary: str
    parameters: tuple[ParameterInfo, ...]
    plugin: str
    distribution: str | None
    version: str | None
    builtin: bool
    status: RegistrationStatus
    cls: type[Wiring] = field(repr=False, compare=False)

    @property
    def qualified_name(self) -> str:
        return f"{self.plugin}:{self.name}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "qualified_name": self.qualified_name,
            "summary": self.summary,
            "parameters": [p.as_dict() for p in self.parameters],
            "plugin": self.plugin,
            "distribution": self.distribution,
            "version": self.version,
            "builtin": self.builtin,
            "status": self.status,
            "class": f"{self.cls.__module__}.{self.cls.__qualname__}",
        }


@dataclass(frozen=True)
class DatasetInfo:
    """A registered dataset, as :func:`ncp_core.list_datasets` reports it."""

    name: str
    summary: str
    plugin: str
    distribution: str | None
    version: str | None
    builtin: bool
    status: RegistrationStatus
    loader: Callable[[], Any] = field(repr=False, compare=False)

    @property
    def qualified_name(self) -> str:
        return f"{self.plugin}:{self.name}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "qualified_name": self.qualified_name,
            "summary": self.summary,
            "plugin": self.plugin,
            "distribution": self.distribution,
            "version": self.version,
            "builtin": self.builtin,
            "status": self.status,
        }


@dataclass(frozen=True)
class PluginInfo:
    """One plugin, as :func:`ncp_core.list_plugins` reports it.

    ``status`` is ``"loaded"``, ``"failed"`` (``error`` says why),
    ``"blocked"`` (by ``NCP_DISABLE_PLUGINS`` or ``NCP_PLUGINS``; ``error``
    says which) or ``"conflict"`` (it registered a name another plugin also
    registered, or its plugin name is taken by another distribution).
    """

    name: str
    status: PluginStatus
    builtin: bool
    distribution: str | None
    version: str | None
    entry_point: str | None
    location: str | None
    hooks: tuple[str, ...]
    wirings: tuple[str, ...]
    datasets: tuple[str, ...]
    error: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "builtin": self.builtin,
            "distribution": self.distribution,
            "version": self.version,
            "entry_point": self.entry_point,
            "location": self.location,
            "hooks": list(self.hooks),
            "wirings": list(self.wirings),
            "datasets": list(self.datasets),
            "error": self.error,
        }


class Registry:
    """Every registration of every kind, in the order they were made."""

    def __init__(self) -> None:
        self._entries: dict[Kind, dict[str, list[Registration]]] = {
            "wiring": {},
            "dataset": {},
        }

    def add(self, registration: Registration) -> None:
        self._entries[registration.kind].setdefault(registration.name, []).append(
            registration
        )

    def remove(self, registration: Registration) -> None:
        entries = self._entries[registration.kind][registration.name]
        entries.remove(registration)
        if not entries:
            del self._entries[registration.kind][registration.name]

    def providers(self, kind: Kind, name: str) -> list[Registration]:
        """Every registration of ``name``; built-in ones first."""
        found = self._entries[kind].get(name, [])
        return sorted(found, key=lambda r: not r.builtin)

    def names(self, kind: Kind) -> list[str]:
        return sorted(self._entries[kind])

    def all(self, kind: Kind) -> list[Registration]:
        return [r for name in self.names(kind) for r in self.providers(kind, name)]

    def has_builtin(self, kind: Kind, name: str) -> bool:
        return any(r.builtin for r in self._entries[kind].get(name, []))

    def status(self, registration: Registration) -> RegistrationStatus:
        """``ok``, ``conflict`` (clashes with a non-built-in) or ``ignored``."""
        others = [
            r
            for r in self._entries[registration.kind].get(registration.name, [])
            if r is not registration
        ]
        if not others or registration.builtin:
            return "ok"
        if any(r.builtin for r in others):
            return "ignored"
        return "conflict"

    def of_target(self, kind: Kind, target: object) -> list[Registration]:
        """Registrations whose wiring class or loader is ``target``."""
        return [r for r in self.all(kind) if r.target is target]
