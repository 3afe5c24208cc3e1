"""The native LTC kernel against the MLX kernels: values, gradients, fallbacks."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten

from ncp_core import native
from ncp_core.cells import LTCCell
from ncp_core.classic import NCP, AutoNCP, FullyConnected
from ncp_core.errors import ModelError
from ncp_core.native import ltc as native_ltc
from ncp_core.rnn import LTC
from ncp_core.training import make_train_step, uses_native

pytestmark = pytest.mark.skipif(
    not native_ltc.available(), reason="no C compiler: the native kernel cannot build"
)

ROOT = Path(__file__).resolve().parents[1]


def random_model(kernel: str, wiring, inputs: int = 3, **kwargs) -> LTC:
    mx.random.seed(7)
    return LTC(inputs, wiring, kernel=kernel, **kwargs)


def loss_and_grads(model, x, h0, **call):
    def loss_fn(model, x, h0):
        y, h = model(x, h0, **call)
        return mx.mean(y**2) + mx.mean(mx.sin(3 * h)), (y, h)

    (loss, (y, h)), grads = nn.value_and_grad(model, loss_fn)(model, x, h0)
    gx = mx.grad(lambda x: loss_fn(model, x, h0)[0])(x)
    return loss, y, h, dict(tree_flatten(grads)), gx


def assert_same(native_result, mlx_result, atol=2e-6, rtol=2e-5):
    for ours, theirs in zip(native_result[:3], mlx_result[:3], strict=True):
        np.testing.assert_allclose(np.array(ours), np.array(theirs), atol=atol)
    grads, reference = native_result[3], mlx_result[3]
    assert sorted(grads) == sorted(reference)
    for name in reference:
        scale = float(mx.abs(reference[name]).max()) + 1e-3
        np.testing.assert_allclose(
            np.array(grads[name]),
            np.array(reference[name]),
            atol=rtol * scale,
            err_msg=name,
        )
    np.testing.assert_allclose(
        np.array(native_result[4]), np.array(mlx_result[4]), atol=atol
    )


def calls_during(function):
    before = native_ltc.calls()
    result = function()
    after = native_ltc.calls()
    return result, {k: after[k] - before[k] for k in after}


CASES = {
    "autoncp": dict(wiring=lambda: AutoNCP(16, 4, seed=1)),
    "odd batch across threads": dict(wiring=lambda: AutoNCP(40, 6, seed=2), batch=17),
    "batch of one": dict(wiring=lambda: NCP(5, 4, 2, 3, 2, 2, 2, seed=3), batch=1),
    "padding mask": dict(wiring=lambda: AutoNCP(16, 4, seed=1), mask=True),
    "per-sample timespans": dict(wiring=lambda: AutoNCP(16, 4, seed=1), spans=True),
    "explicit constraints, mask and spans": dict(
        wiring=lambda: AutoNCP(20, 5, seed=4),
        mask=True,
        spans=True,
        model=dict(implicit_param_constraints=False),
    ),
    "fully connected, no mappings": dict(
        wiring=lambda: FullyConnected(6, 2),
        model=dict(input_mapping=None, output_mapping="linear"),
    ),
    "last step only, 3 unfolds": dict(
        wiring=lambda: AutoNCP(16, 4, seed=5),
        model=dict(return_sequences=False, ode_unfolds=3),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_native_sequence_matches_the_sparse_kernel(case):
    spec = CASES[case]
    batch, length = spec.get("batch", 5), 7
    rng = np.random.default_rng(0)
    x = mx.array(rng.normal(size=(batch, length, 3)).astype(np.float32))
    call = {}
    if spec.get("mask"):
        keep = np.ones((batch, length), bool)
        keep[-1, 4:] = False
        keep[0, 2] = False
        call["mask"] = mx.array(keep)
    if spec.get("spans"):
        call["timespans"] = mx.array(
            rng.uniform(0.2, 2.0, (batch, length)).astype(np.float32)
        )
    wiring = spec["wiring"]()
    ours = random_model("native", wiring, **spec.get("model", {}))
    assert ours.uses_native
    reference = random_model("sparse", wiring, **spec.get("model", {}))
    h0 = mx.array(rng.normal(size=(batch, ours.state_size)).astype(np.float32)) * 0.3

    native_result, counted = calls_during(lambda: loss_and_grads(ours, x, h0, **call))
    assert counted == {"forward": 2, "backward": 2}
    assert_same(native_result, loss_and_grads(reference, x, h0, **call))


def test_native_honours_time_scales_and_synapse_gains():
    rng = np.random.default_rng(1)
    wiring = AutoNCP(16, 4, seed=1)
    wiring.build(3)
    wiring.time_scales = rng.uniform(0.5, 3.0, 16).astype(np.float32)
    gains = rng.uniform(0.0, 2.0, (16, 16)).astype(np.float32)
    sensory_gains = rng.uniform(0.0, 2.0, (3, 16)).astype(np.float32)
    models = [random_model(kernel, wiring) for kernel in ("native", "dense")]
    for model in models:
        model.set_synapse_gains(gains, sensory_gains)
    x = mx.array(rng.normal(size=(4, 6, 3)).astype(np.float32))
    h0 = mx.zeros((4, 16))
    results = [loss_and_grads(model, x, h0) for model in models]
    assert_same(*results)
    plain = random_model("native", AutoNCP(16, 4, seed=1))
    assert not np.allclose(np.array(plain(x)[0]), np.array(models[0](x)[0]))


def test_native_cell_step_matches_the_compiled_dense_step_with_gradients():
    wiring = AutoNCP(19, 4, seed=0)
    mx.random.seed(3)
    ours = LTCCell(wiring, 8, kernel="native")
    reference = LTCCell(wiring, 8, kernel="dense")
    reference.update(ours.parameters())
    rng = np.random.default_rng(2)
    x = mx.array(rng.normal(size=(3, 8)).astype(np.float32))
    h = mx.array(rng.normal(size=(3, 19)).astype(np.float32)) * 0.2
    spans = mx.array([0.5, 1.0, 2.0])

    def loss_fn(cell, x, h):
        y, v = cell(x, h, spans)
        return mx.sum(y**2) + mx.sum(v**3)

    (y_ours, v_ours), counted = calls_during(lambda: ours(x, h, spans))
    assert counted["forward"] == 1
    assert y_ours.shape == (3, 4) and v_ours.shape == (3, 19)
    y_ref, v_ref = reference(x, h, spans)
    np.testing.assert_allclose(np.array(y_ours), np.array(y_ref), atol=1e-6)
    np.testing.assert_allclose(np.array(v_ours), np.array(v_ref), atol=1e-6)
    grads = dict(tree_flatten(nn.value_and_grad(ours, loss_fn)(ours, x, h)[1]))
    expected = dict(
        tree_flatten(nn.value_and_grad(reference, loss_fn)(reference, x, h)[1])
    )
    for name, value in expected.items():
        np.testing.assert_allclose(
            np.array(grads[name]), np.array(value), atol=2e-5, err_msg=name
        )


def test_inside_mx_compile_the_mlx_kernel_runs_and_agrees():
    model = random_model("auto", AutoNCP(16, 4, seed=1))
    x = mx.random.normal((2, 5, 3))
    eager = model(x)[0]
    compiled, counted = calls_during(lambda: mx.compile(lambda x: model(x)[0])(x))
    assert counted == {"forward": 0, "backward": 0}
    np.testing.assert_allclose(np.array(compiled), np.array(eager), atol=1e-6)


def test_training_runs_uncompiled_on_the_native_kernel_as_the_compiled_mlx_one():
    import mlx.optimizers as optim

    rng = np.random.default_rng(3)
    x = mx.array(rng.normal(size=(8, 10, 3)).astype(np.float32))
    y = mx.array(np.tanh(np.cumsum(np.array(x)[..., :2], axis=1) / 3))

    def mse(model, x, y):
        return mx.mean((model(x)[0] - y) ** 2)

    losses, models = {}, {}
    for kernel in ("auto", "sparse"):
        model = random_model(kernel, AutoNCP(16, 2, seed=1))
        assert uses_native(model) == (kernel == "auto")
        step = make_train_step(model, optim.Adam(learning_rate=0.02), mse)
        losses[kernel], counted = calls_during(
            lambda step=step: [step(x, y).item() for _ in range(25)]
        )
        expected = 25 if kernel == "auto" else 0
        assert counted == {"forward": expected, "backward": expected}
        models[kernel] = model
    np.testing.assert_allclose(losses["auto"], losses["sparse"], rtol=1e-3)
    assert losses["auto"][-1] < 0.7 * losses["auto"][0]
    trained = dict(tree_flatten(models["auto"].parameters()))
    for name, value in tree_flatten(models["sparse"].parameters()):
        np.testing.assert_allclose(
            np.array(trained[name]), np.array(value), atol=2e-4, err_msg=name
        )


def test_mixed_memory_keeps_the_mlx_path():
    model = random_model("auto", AutoNCP(16, 4, seed=1), mixed_memory=True)
    assert not model.uses_native
    _, counted = calls_during(lambda: mx.eval(model(mx.ones((2, 3, 3)))[0]))
    assert counted["forward"] == 0


def test_native_kernel_switched_off_falls_back_and_kernel_native_refuses(monkeypatch):
    monkeypatch.setenv("NCP_NATIVE", "0")
    model = random_model("auto", AutoNCP(16, 4, seed=1))
    assert not model.uses_native
    _, counted = calls_during(lambda: mx.eval(model(mx.ones((2, 3, 3)))[0]))
    assert counted["forward"] == 0
    with pytest.raises(ModelError, match="kernel='native'.*kernel='auto'"):
        LTCCell(AutoNCP(16, 4), 3, kernel="native")


def test_synapse_list_groups_sources_by_target():
    polarity = np.array([[0, 1, -1], [1, 0, 0], [0, 1, 1]], np.int8)
    synapses = native_ltc.synapse_list(polarity)
    assert synapses.ptr.tolist() == [0, 1, 3, 5]
    assert synapses.src.tolist() == [1, 0, 2, 0, 2]
    assert np.array(synapses.flat).tolist() == [3, 1, 7, 2, 8]


def run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


PROBE = """
import json, mlx.core as mx
from ncp_core import native
from ncp_core.classic import AutoNCP
from ncp_core.rnn import LTC
mx.random.seed(0)
model = LTC(3, AutoNCP(16, 4, seed=1))
y = model(mx.ones((2, 4, 3)))[0]
print(json.dumps({"native": model.uses_native, "sum": float(y.sum()),
                  "status": native.status()}))
"""


def test_the_library_is_built_once_into_the_cache_and_reused(tmp_path):
    cache = tmp_path / "cache"
    first = run_python(PROBE, {"NCP_NATIVE_CACHE": str(cache)})
    assert first.returncode == 0, first.stderr
    built = sorted(p.name for p in cache.iterdir())
    assert len(built) == 1 and built[0].startswith("ltc-") and built[0].endswith(".so")
    stamp = (cache / built[0]).stat().st_mtime_ns
    second = run_python(PROBE, {"NCP_NATIVE_CACHE": str(cache)})
    assert second.returncode == 0, second.stderr
    assert sorted(p.name for p in cache.iterdir()) == built
    assert (cache / built[0]).stat().st_mtime_ns == stamp
    assert json.loads(first.stdout)["sum"] == json.loads(second.stdout)["sum"]


def test_without_a_compiler_the_mlx_kernel_runs_and_the_failure_is_reported(
    tmp_path,
):
    env = {"NCP_NATIVE_CACHE": str(tmp_path / "empty"), "CC": "false"}
    done = run_python(PROBE, env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["native"] is False
    assert "did not compile" in report["status"]["failures"]["ltc"]
    native_sum = json.loads(run_python(PROBE, {}).stdout)["sum"]
    assert report["sum"] == pytest.approx(native_sum, abs=1e-4)
    required = run_python(PROBE, {**env, "NCP_NATIVE": "1"})
    assert required.returncode != 0
    assert "NCP_NATIVE=1" in required.stderr and "C compiler" in required.stderr


def test_thread_count_setting_is_checked(monkeypatch):
    monkeypatch.setenv("NCP_NUM_THREADS", "two")
    with pytest.raises(ModelError, match="NCP_NUM_THREADS.*'two'"):
        native.num_threads()
    monkeypatch.setenv("NCP_NUM_THREADS", "1")
    model = random_model("auto", AutoNCP(16, 4, seed=1))
    one = np.array(model(mx.ones((9, 4, 3)))[0])
    monkeypatch.setenv("NCP_NUM_THREADS", "3")
    np.testing.assert_allclose(np.array(model(mx.ones((9, 4, 3)))[0]), one, atol=0)


def test_the_vectorised_logistic_function_is_within_1e7_of_the_exact_one():
    library = native.load("ltc")
    x = np.linspace(-40.0, 40.0, 400_001).astype(np.float32)
    y = np.empty_like(x)
    library.ncp_ltc_sigmoid(
        ctypes.c_void_p(native.pointer(x)),
        ctypes.c_void_p(native.pointer(y)),
        ctypes.c_int(x.size),
    )
    exact = 1.0 / (1.0 + np.exp(-x.astype(np.float64)))
    assert np.abs(y - exact).max() < 1e-7
    assert (np.abs(y - exact) / exact).max() < 2e-6
    assert y[0] > 0.0 and y[-1] == 1.0


def test_the_exact_exp_build_agrees_with_the_fast_one(tmp_path):
    env = {"NCP_NATIVE_CACHE": str(tmp_path / "exact"), "NCP_NATIVE_EXACT": "1"}
    exact = run_python(PROBE, env)
    assert exact.returncode == 0, exact.stderr
    report = json.loads(exact.stdout)
    assert report["native"] is True and report["status"]["exact_exp"] is True
    fast = json.loads(run_python(PROBE, {}).stdout)
    assert report["sum"] == pytest.approx(fast["sum"], abs=1e-5)


def test_an_in_place_parameter_change_reaches_the_next_native_call():
    cell = LTCCell(AutoNCP(19, 4, seed=0), 8, kernel="native")
    x, h = mx.ones((1, 8)), mx.zeros((1, 19))
    before = np.array(cell(x, h)[1])
    assert np.array_equal(np.array(cell(x, h)[1]), before)  # the cached values
    source = int(np.nonzero(cell._sensory_polarity[0])[0][0])
    cell.sensory_w[0, source] = 25.0  # same array object, new contents
    after = np.array(cell(x, h)[1])
    assert not np.allclose(after, before)
    dense = LTCCell(AutoNCP(19, 4, seed=0), 8, kernel="dense")
    dense.update(cell.parameters())
    np.testing.assert_allclose(after, np.array(dense(x, h)[1]), atol=1e-6)


def test_no_grad_returns_plain_results_equal_to_the_graph_ones():
    import ncp

    cell = LTCCell(AutoNCP(19, 4, seed=0), 8, kernel="native")
    x, h = mx.random.normal((2, 8)), mx.zeros((2, 19))
    y, v = cell(x, h)
    with ncp.no_grad():
        (y_plain, v_plain), counted = calls_during(lambda: cell(x, h))
        with ncp.no_grad():
            pass
        assert not native.grad_enabled()
    assert native.grad_enabled()
    assert counted["forward"] == 1
    np.testing.assert_array_equal(np.array(y_plain), np.array(y))
    np.testing.assert_array_equal(np.array(v_plain), np.array(v))
    model = random_model("native", AutoNCP(16, 4, seed=1))
    xs = mx.random.normal((2, 5, 3))
    with ncp.no_grad():
        plain = model(xs)[0]
    np.testing.assert_array_equal(np.array(plain), np.array(model(xs)[0]))


def test_many_masked_calls_keep_matching_the_mlx_kernel():
    # each call converts its mask to a private buffer; none may be freed
    # before the kernel has read it, however many calls come before
    ours = random_model("native", AutoNCP(12, 3, seed=2))
    reference = random_model("sparse", AutoNCP(12, 3, seed=2))
    rng = np.random.default_rng(5)
    for _ in range(70):
        x = mx.array(rng.normal(size=(3, 6, 3)).astype(np.float32))
        keep = mx.array(rng.uniform(size=(3, 6)) < 0.7)
        np.testing.assert_allclose(
            np.array(ours(x, mask=keep)[0]),
            np.array(reference(x, mask=keep)[0]),
            atol=2e-6,
        )


def test_in_place_edits_of_inputs_states_and_mappings_are_seen():
    ours = random_model("native", AutoNCP(12, 3, seed=2))
    reference = random_model("sparse", AutoNCP(12, 3, seed=2))
    x, h = mx.ones((2, 4, 3)), mx.zeros((2, 12))
    mx.eval(ours(x, h)[0])
    x[:, :, 1] = -2.0
    h[0, 3] = 0.7
    for model in (ours, reference):
        model.rnn_cell.output_w[:] = -2.0
        model.rnn_cell.input_b[:] = 0.5
    np.testing.assert_allclose(
        np.array(ours(x, h)[0]), np.array(reference(x, h)[0]), atol=2e-6
    )


def test_timespans_take_the_same_gradient_as_on_the_mlx_kernel():
    rng = np.random.default_rng(6)
    x = mx.array(rng.normal(size=(3, 5, 3)).astype(np.float32))
    spans = mx.array(rng.uniform(0.3, 2.0, (3, 5)).astype(np.float32))
    grads = {}
    for kernel in ("native", "sparse"):
        model = random_model(kernel, AutoNCP(12, 3, seed=2))

        def loss(spans, model=model):
            return mx.sum(model(x, timespans=spans)[0] ** 2)

        grads[kernel] = np.array(mx.grad(loss)(spans))
    assert np.abs(grads["sparse"]).max() > 1e-3
    np.testing.assert_allclose(grads["native"], grads["sparse"], atol=1e-5)


def test_forward_mode_derivatives_are_refused_with_a_way_out():
    model = random_model("native", AutoNCP(12, 3, seed=2))
    x = mx.ones((2, 4, 3))
    with pytest.raises(native.NativeUnsupported, match="kernel='sparse'"):
        mx.jvp(lambda x: model(x)[0], (x,), (mx.ones_like(x),))


def test_other_float_types_take_the_mlx_kernel():
    model = random_model("native", AutoNCP(12, 3, seed=2))
    x = mx.ones((2, 4, 3), mx.bfloat16)
    (y, _), counted = calls_during(lambda: model(x))
    assert counted["forward"] == 0 and bool(mx.isfinite(y.astype(mx.float32)).all())
    model.set_dtype(mx.bfloat16)
    (y, _), counted = calls_during(lambda: model(x))
    assert counted["forward"] == 0 and bool(mx.isfinite(y.astype(mx.float32)).all())


def test_one_no_grad_object_can_be_entered_again(monkeypatch):
    import ncp

    context = ncp.no_grad()
    for _ in range(2):
        with context:
            assert not native.grad_enabled()
        assert native.grad_enabled()
    monkeypatch.setenv("NCP_NATIVE", "false")
    assert not native.enabled()
