"""Regenerate ``reference_fixture.npz`` from the PyTorch reference library.

Usage::

    pip install torch==2.13.0 ncps==1.0.1
    python tests/reference/make_fixture.py

torch and ncps are needed only to *run* this script; the committed ``.npz`` is
what the test-suite reads, so neither package is a dependency of ncp.

Every case builds one reference model from a small declarative spec (recorded
verbatim as ``<case>/meta``), runs it in float32 on deterministic inputs and
stores parameters, inputs, outputs and parameter gradients. See README.md in
this folder for the key layout.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

OUT_PATH = Path(__file__).with_name("reference_fixture.npz")

# loss whose gradients are stored under <case>/grad/<param name>
LOSS_DOC = "loss = mean(y**2) + 0.1 * sum(h_final)"


def _seq(
    model_cls: str,
    args: list[Any],
    kwargs: dict[str, Any],
    *,
    wiring: dict[str, Any] | None = None,
    seed: int,
    batch: int = 3,
    length: int = 5,
    h0: bool = False,
    timespans: bool = False,
) -> dict[str, Any]:
    """Describe one sequence-model case (``LTC`` or ``CfC`` from ncps.torch).

    ``wiring`` (if given) is constructed and passed as the ``units`` argument,
    i.e. it is inserted after the first positional argument (``input_size``).
    """
    kw = {"return_sequences": True, "batch_first": True}
    kw.update(kwargs)
    return {
        "class": f"ncps.torch.{model_cls}",
        "args": args,
        "kwargs": kw,
        "wiring": wiring,
        "torch_seed": seed,
        "input_seed": seed + 50_000,
        "batch": batch,
        "length": length,
        "h0": h0,
        "timespans": timespans,
    }


def _wiring(cls: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
    return {"class": f"ncps.wirings.{cls}", "args": list(args), "kwargs": kwargs}


def case_specs() -> dict[str, dict[str, Any]]:
    cfc_bb = {"backbone_units": 16, "backbone_layers": 2, "backbone_dropout": 0.0}
    specs: dict[str, dict[str, Any]] = {
        # ---------------------------------------------------------------- LTC
        "ltc_fc": _seq(
            "LTC",
            [4],
            {"implicit_param_constraints": False},
            wiring=_wiring("FullyConnected", 6, 2),
            seed=101,
            h0=True,
        ),
        "ltc_implicit": _seq(
            "LTC",
            [4],
            {"implicit_param_constraints": True},
            wiring=_wiring("FullyConnected", 6, 2),
            seed=102,
        ),
        "ltc_autoncp": _seq(
            "LTC",
            [5],
            {},
            wiring=_wiring("AutoNCP", 16, 3),
            seed=103,
            length=6,
        ),
        "ltc_timespans": _seq(
            "LTC",
            [4],
            {},
            wiring=_wiring("AutoNCP", 12, 2),
            seed=104,
            batch=1,
            timespans=True,
        ),
        "ltc_mixed": _seq(
            "LTC",
            [4],
            {"mixed_memory": True},
            wiring=_wiring("AutoNCP", 12, 2),
            seed=105,
            h0=True,
        ),
        # ---------------------------------------------------------- dense CfC
        "cfc_default": _seq(
            "CfC", [4, 8], {"mode": "default", **cfc_bb}, seed=201, h0=True
        ),
        "cfc_pure": _seq("CfC", [4, 8], {"mode": "pure", **cfc_bb}, seed=202),
        "cfc_no_gate": _seq("CfC", [4, 8], {"mode": "no_gate", **cfc_bb}, seed=203),
        "cfc_nobackbone": _seq(
            "CfC", [4, 8], {"backbone_layers": 0, "backbone_dropout": 0.0}, seed=204
        ),
        "cfc_mixed": _seq(
            "CfC",
            [4, 8],
            {"mixed_memory": True, "proj_size": 3},
            seed=205,
            h0=True,
        ),
        "cfc_timespans": _seq(
            "CfC", [4, 8], {}, seed=206, batch=1, timespans=True, h0=True
        ),
        # ---------------------------------------------------------- wired CfC
        "wired_cfc_autoncp": _seq(
            "CfC",
            [5],
            {},
            wiring=_wiring("AutoNCP", 16, 3),
            seed=301,
            h0=True,
        ),
        "wired_cfc_autoncp_pure": _seq(
            "CfC",
            [5],
            {"mode": "pure"},
            wiring=_wiring("AutoNCP", 16, 3),
            seed=302,
        ),
        "wired_cfc_autoncp_no_gate": _seq(
            "CfC",
            [5],
            {"mode": "no_gate"},
            wiring=_wiring("AutoNCP", 16, 3),
            seed=303,
        ),
    }
    for i, act in enumerate(["silu", "relu", "tanh", "gelu"]):
        specs[f"cfc_activation_{act}"] = _seq(
            "CfC", [3, 5], {"activation": act}, seed=401 + i, batch=2, length=3
        )
    return specs


def _resolve(dotted: str) -> Any:
    import importlib

    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _f32(t: Any) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32)


def run_case(name: str, spec: dict[str, Any]) -> dict[str, np.ndarray]:
    import torch

    out: dict[str, np.ndarray] = {}
    torch.manual_seed(spec["torch_seed"])

    wiring = None
    args = list(spec["args"])
    if spec["wiring"] is not None:
        w = spec["wiring"]
        wiring = _resolve(w["class"])(*w["args"], **w["kwargs"])
        args.insert(1, wiring)
    model = _resolve(spec["class"])(*args, **spec["kwargs"])
    model = model.float()

    # ---- parameters (all of state_dict, masks included)
    for key, value in model.state_dict().items():
        out[f"{name}/{key}"] = _f32(value)

    # ---- wiring matrices (the model has built the wiring by now)
    if wiring is not None:
        out[f"{name}/wiring.adjacency"] = wiring.adjacency_matrix.astype(np.int8)
        out[f"{name}/wiring.sensory_adjacency"] = (
            wiring.sensory_adjacency_matrix.astype(np.int8)
        )
        out[f"{name}/wiring.output_dim"] = np.asarray(wiring.output_dim, np.int32)
        if spec["class"].endswith("CfC"):
            for layer in range(wiring.num_layers):
                ids = np.asarray(wiring.get_neurons_of_layer(layer), np.int32)
                out[f"{name}/wiring.layer{layer}"] = ids

    # ---- deterministic inputs (numpy RNG, independent of torch's stream)
    rng = np.random.default_rng(spec["input_seed"])
    batch, length = spec["batch"], spec["length"]
    in_features = spec["args"][0]
    x = rng.standard_normal((batch, length, in_features)).astype(np.float32)
    out[f"{name}/x"] = x
    state_size = model.state_size
    mixed = bool(spec["kwargs"].get("mixed_memory", False))

    hx = None
    if spec["h0"]:
        h0 = (0.5 * rng.standard_normal((batch, state_size))).astype(np.float32)
        out[f"{name}/h0"] = h0
        if mixed:
            c0 = (0.5 * rng.standard_normal((batch, state_size))).astype(np.float32)
            out[f"{name}/c0"] = c0
            hx = (torch.from_numpy(h0), torch.from_numpy(c0))
        else:
            hx = torch.from_numpy(h0)

    ts = None
    if spec["timespans"]:
        if batch != 1:
            raise ValueError("reference handles timespans correctly only for B=1")
        tsn = rng.uniform(0.3, 2.0, size=(batch, length)).astype(np.float32)
        out[f"{name}/timespans"] = tsn
        ts = torch.from_numpy(tsn)

    # ---- forward + backward
    model.zero_grad(set_to_none=True)
    y, state = model(torch.from_numpy(x), hx=hx, timespans=ts)
    if mixed:
        h_final, c_final = state
        out[f"{name}/c_final"] = _f32(c_final)
    else:
        h_final = state
    out[f"{name}/y"] = _f32(y)
    out[f"{name}/h_final"] = _f32(h_final)

    loss = (y**2).mean() + 0.1 * h_final.sum()
    loss.backward()
    out[f"{name}/loss"] = np.asarray(loss.item(), np.float32)
    for pname, p in model.named_parameters():
        if not p.requires_grad:
            continue
        grad = torch.zeros_like(p) if p.grad is None else p.grad
        out[f"{name}/grad/{pname}"] = _f32(grad)

    meta = {
        "class": spec["class"],
        "args": spec["args"],
        "kwargs": spec["kwargs"],
        "wiring": spec["wiring"],
        "wiring_position": "units (2nd positional argument)"
        if spec["wiring"] is not None
        else None,
        "torch_seed": spec["torch_seed"],
        "input_seed": spec["input_seed"],
        "batch": batch,
        "length": length,
        "state_size": int(state_size),
        "h0_given": spec["h0"],
        "timespans_given": spec["timespans"],
        "loss": LOSS_DOC,
        "trainable": [n for n, p in model.named_parameters() if p.requires_grad],
    }
    out[f"{name}/meta"] = np.array(json.dumps(meta, sort_keys=True))
    return out


def main() -> int:
    try:
        import ncps
        import torch
    except ImportError as exc:  # pragma: no cover - only for regeneration
        print(
            f"make_fixture.py needs torch and ncps: {exc}\n"
            "pip install torch==2.13.0 ncps==1.0.1",
            file=sys.stderr,
        )
        return 1
    from importlib.metadata import version

    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)

    specs = case_specs()
    arrays: dict[str, np.ndarray] = {}
    for name, spec in specs.items():
        arrays.update(run_case(name, spec))

    arrays["__fixture__/meta"] = np.array(
        json.dumps(
            {
                "ncps": version("ncps"),
                "torch": torch.__version__,
                "numpy": np.__version__,
                "ncps_module": ncps.__name__,
                "loss": LOSS_DOC,
                "cases": sorted(specs),
            },
            sort_keys=True,
        )
    )
    np.savez_compressed(OUT_PATH, **arrays)
    size_kib = OUT_PATH.stat().st_size / 1024
    print(
        f"wrote {OUT_PATH} ({len(specs)} cases, {len(arrays)} arrays, "
        f"{size_kib:.0f} KiB)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
