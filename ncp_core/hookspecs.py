"""The hooks a plugin may implement.

A plugin is a module named by an entry point in the ``ncp`` group. It marks
its hook functions with :data:`ncp_core.hookimpl`::

    from ncp_core import hookimpl

    @hookimpl
    def ncp_register_wirings(register):
        register(MyWiring)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import pluggy

PROJECT_NAME: Final = "ncp"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def ncp_register_wirings(register: Callable[..., Any]) -> None:
    """Register the wiring classes this plugin provides.

    :param register: call ``register(cls, name=None)`` once per wiring class.
        ``cls`` is a subclass of :class:`ncp_core.Wiring`; ``name`` defaults to
        ``cls.name``. Names are short, lower case and unique among installed
        plugins (``"attention"``, ``"vision"``); a clash is reported when the
        name is asked for, naming both distributions.

    .. versionadded:: 0.1.0
    """


@hookspec
def ncp_register_datasets(register: Callable[..., Any]) -> None:
    """Register the sequence datasets this plugin provides.

    :param register: call ``register(name, loader, summary="")`` once per
        dataset. ``loader`` takes no arguments and returns a
        :class:`ncp_core.data.SequenceDataset`; it is called only when the
        dataset is used, so registering is cheap. The name becomes valid for
        ``ncp train --data NAME``.

    .. versionadded:: 0.1.0
    """
