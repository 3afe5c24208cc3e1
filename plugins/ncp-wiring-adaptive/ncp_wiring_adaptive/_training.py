"""Adapting an adaptive wiring while its model trains."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import mlx.nn as nn

from ncp_core.adapt import (
    WiringTracker,
    apply_wiring,
    run_dataset,
    run_objective,
    synapse_scores,
    wired_cells,
)
from ncp_core.errors import WiringError
from ncp_core.wiring import Wiring, _check_fraction, _check_size
from ncp_wiring_adaptive._wiring import Adaptive

__all__ = ["AdaptiveConnectivity"]


class AdaptiveConnectivity(WiringTracker):
    """Prune and regrow the synapses of an :class:`Adaptive` wiring in training.

    Every ``every`` epochs of :func:`ncp_core.train.fit` (or whenever
    :meth:`adapt` is called from a loop of your own):

    1. scores every neuron pair of the model's wiring
       (:func:`ncp_core.adapt.synapse_scores`): the weight magnitude of a
       present synapse, and for an absent one ``|∂L/∂g|``, the gradient of
       the loss with respect to a gain that switches the synapse on (a
       separate gradient pass on one batch, masks unchanged afterwards);
    2. moves ``fraction`` of the synapses
       (:meth:`Adaptive.update_connectivity`);
    3. pushes the new masks into the running model: kept synapses keep their
       trained weights, grown ones start at weight zero where the cell allows
       it (``new_synapses="zero"``, as RigL: the model's function is
       unchanged by the growth) or from their stored draw (``"stored"``, as
       SET), and a compiled training step keeps working.

    In :func:`~ncp_core.train.fit` the batch is ``batch_size`` training
    series drawn with the epoch number as seed, and the run's files follow
    the wiring (see :class:`ncp_core.adapt.WiringTracker`): the saved model
    reloads with the synapses it was trained with.

    Args:
        every (int): Epochs between updates. Default: ``1``.
        fraction (float): Share of synapses moved per update. Default: ``0.1``.
        batch_size (int): Series used for the scores. Default: ``64``.
        data (SequenceDataset | str, optional): The run's dataset, needed
            only for runs given an in-memory dataset. Default: as recorded.
        new_synapses (str): ``"zero"`` or ``"stored"``, see
            :func:`ncp_core.adapt.apply_wiring`. Default: ``"zero"``.

    Attributes:
        history: one ``{"epoch", "pruned", "grown"}`` dict per update.
    """

    def __init__(
        self,
        every: int = 1,
        fraction: float = 0.1,
        batch_size: int = 64,
        data: Any = None,
        new_synapses: str = "zero",
    ) -> None:
        if new_synapses not in ("zero", "stored"):
            raise WiringError(
                f"new_synapses must be 'zero' or 'stored', got {new_synapses!r}"
            )
        super().__init__(data, new_synapses)
        self.every = _check_size("adapt_every", every)
        self.fraction = _check_fraction("adapt_fraction", fraction)
        self.batch_size = _check_size("batch_size", batch_size)
        self.history: list[dict[str, Any]] = []
        self._dataset: Any = None

    def update(
        self,
        model: nn.Module,
        loss_fn: Callable[..., Any],
        batch: Sequence[Any],
        wiring: Wiring | None = None,
    ) -> dict[str, Any]:
        """Score and move the synapses of ``wiring``; the model is not touched.

        Returns the ``pruned`` and ``grown`` pairs.
        """
        wiring = wired_cells(model, wiring)[0].wiring
        if not isinstance(wiring, Adaptive):
            raise WiringError(
                f"AdaptiveConnectivity needs a model on an 'adaptive' wiring, got "
                f"{wiring.name!r}; build it with get_wiring('adaptive', ...)"
            )
        polarity = wiring.candidate_polarity()
        scores = synapse_scores(model, loss_fn, batch, polarity, wiring=wiring)
        return wiring.update_connectivity(scores, self.fraction, polarity)

    def adapt(
        self,
        model: nn.Module,
        loss_fn: Callable[..., Any],
        batch: Sequence[Any],
        wiring: Wiring | None = None,
    ) -> dict[str, Any]:
        """:meth:`update`, then push the new masks into ``model``.

        For a training loop of your own: call it every few steps with the
        loss ``loss_fn(model, *batch)`` the loop minimises.
        """
        changes = self.update(model, loss_fn, batch, wiring)
        wiring = wired_cells(model, wiring)[0].wiring
        apply_wiring(model, wiring, new_synapses=self.new_synapses)
        return changes

    def change(self, run: Any, epoch: int, logs: Mapping[str, Any]) -> bool:
        if epoch % self.every:
            return False
        if self._dataset is None:
            self._dataset = run_dataset(run, self.data)
        loss_fn, batch = run_objective(run, self.batch_size, epoch, self._dataset)
        changes = self.update(run.model, loss_fn, batch, run.wiring)
        self.history.append({"epoch": epoch, **changes})
        return len(changes["pruned"]) > 0
