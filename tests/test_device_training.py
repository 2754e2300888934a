"""Training and inference on the GPU backends: the step stays on the device, errors name the
layer, the lesson network trains as on NumPy.

These tests run where a GPU backend can: in the emulated device runs (``NUMBA_ENABLE_CUDASIM=1``
for numba-cuda) and on a real GPU.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastconv
from fastconv.backends import DEVICE_BACKENDS
from fastconv.backends.device import DeviceError, DeviceMemoryError
from fastconv.layers import Conv2D, Dense, Dropout, Flatten, MaxPooling2D
from fastconv.models import Sequential
from fastconv.utils import set_random_seed
from tests.devices import EMULATED_DEVICES

pytestmark = pytest.mark.device


def _usable_devices() -> tuple[str, ...]:
    if EMULATED_DEVICES:
        return EMULATED_DEVICES
    available = fastconv.available_backends()
    return tuple(name for name in sorted(DEVICE_BACKENDS) if available[name] is None)


@pytest.fixture(params=_usable_devices())
def device(request):
    with fastconv.use_backend(request.param) as be:
        yield be


def _small_net(dropout=False):
    set_random_seed(3)
    model = Sequential()
    model.add(Conv2D(3, (3, 3), activation="relu", input_shape=(6, 6, 1), name="conv"))
    model.add(MaxPooling2D((2, 2)))
    model.add(Flatten())
    if dropout:
        model.add(Dropout(0.25))
    model.add(Dense(4, activation="softmax", name="head"))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def _data(n=8):
    rng = np.random.default_rng(0)
    return rng.random((n, 6, 6, 1), dtype=np.float32), rng.integers(0, 4, n)


@pytest.mark.parametrize("dropout", [False, True], ids=["plain", "dropout"])
def test_a_fit_step_uploads_the_batch_and_brings_back_only_loss_and_metric(device, dropout):
    """Per step: x and y go up (two copies), the loss and the accuracy sum come back (one)."""
    model = _small_net(dropout)
    x, y = _data()
    model.fit(x[:4], y[:4], batch_size=4, epochs=1, verbose=0)  # builds weights and slots
    device.transfers.reset()
    history = model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    steps = 2
    assert device.transfers.to_device == 2 * steps, device.transfers
    assert device.transfers.to_host == steps, device.transfers
    assert device.transfers.bytes_to_host == steps * 2 * 8  # loss + accuracy sum, float64
    assert np.isfinite(history.history["loss"][0])
    assert 0.0 <= history.history["accuracy"][0] <= 1.0


def test_evaluate_and_predict_transfer_inputs_and_results_only(device):
    model = _small_net()
    x, y = _data()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    device.transfers.reset()
    model.evaluate(x, y, batch_size=4, verbose=0)
    assert (device.transfers.to_device, device.transfers.to_host) == (4, 2)
    device.transfers.reset()
    out = model.predict(x, batch_size=8, verbose=0)
    assert (device.transfers.to_device, device.transfers.to_host) == (1, 1)
    assert out.shape == (8, 4) and isinstance(out, np.ndarray)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)


def _fail_with(device, monkeypatch, primitive, error):
    def boom(*args, **kwargs):
        raise error

    monkeypatch.setattr(device, primitive, boom)


class _RawOutOfMemory(Exception):
    """Stands for the device's own out-of-memory error (cupy's OutOfMemoryError on a GPU)."""


class _RawCudaError(Exception):
    """Stands for a raw CUDA API error."""


def test_out_of_memory_names_the_layer_and_the_batch_to_try(device, monkeypatch):
    model = _small_net()
    x, y = _data()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    monkeypatch.setattr(device, "memory_errors", lambda: (_RawOutOfMemory,))
    _fail_with(device, monkeypatch, "conv2d_forward", _RawOutOfMemory("out of memory allocating"))
    with pytest.raises(DeviceMemoryError, match=r"layer 'conv' \(Conv2D\) ran out of memory on "
                       r"numba-cuda|layer 'conv' \(Conv2D\) ran out of memory") as info:
        model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert "batch of 8" in str(info.value) and "try batch_size=4" in str(info.value)
    assert isinstance(info.value.__cause__, _RawOutOfMemory)
    def prepare(*args, **kwargs):  # inference plans prepare their convolutions
        def run(*a, **k):
            raise _RawOutOfMemory("out of memory allocating")
        return run

    monkeypatch.setattr(device, "prepare_conv2d_forward", prepare)
    with pytest.raises(DeviceMemoryError, match=r"layer 'conv'.*try batch_size=4"):
        model.predict(x, batch_size=8, verbose=0)


def test_raw_device_errors_name_the_layer_and_the_backward_pass(device, monkeypatch):
    model = _small_net()
    x, y = _data()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    monkeypatch.setattr(device, "device_errors", lambda: (_RawCudaError,))
    _fail_with(device, monkeypatch, "max_pool2d_forward", _RawCudaError("CUDA_ERROR_LAUNCH_FAILED"))
    with pytest.raises(DeviceError, match=r"layer 'max_pooling2d(_\d+)?' \(MaxPooling2D\) failed"
                       r".*CUDA_ERROR_LAUNCH_FAILED"):
        model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    monkeypatch.undo()
    monkeypatch.setattr(device, "device_errors", lambda: (_RawCudaError,))
    _fail_with(device, monkeypatch, "adam_update", _RawCudaError("CUDA_ERROR_ILLEGAL_ADDRESS"))
    with pytest.raises(DeviceError, match=r"the backward pass and update of model .* failed"):
        model.fit(x, y, batch_size=8, epochs=1, verbose=0)


def test_an_array_of_another_backend_is_refused_naming_both(device):
    model = _small_net()
    x, y = _data()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    with fastconv.use_backend("numpy"):
        foreign = fastconv.Tensor(x)
    with pytest.raises((TypeError, ValueError), match=r"numpy.*" + device.name + "|"
                       + device.name + r".*numpy"):
        model(foreign)


def test_info_describes_the_device(device, capsys):
    from fastconv.cli import main

    assert main(["info"]) == 0
    out = capsys.readouterr().out
    # names are padded to the longest backend name
    assert any(line.split() == [device.name, "available"] for line in out.splitlines()), out
    assert "device: " + str(device.describe_device()["name"]) in out


def test_lesson_network_trains_on_the_device_as_on_numpy(device, mnist_dir):
    """Training steps of the lesson's network (``lesson_model``: its three convolutions, two
    poolings and two dense layers) on MNIST images, one image a step, give NumPy's losses and
    accuracies. The convolutions use the direct algorithm on both backends: one thread per
    output is what emulations run fastest; the im2col and Winograd kernels' three passes are
    checked against the float64 oracle by tests/test_conv_kernels.py,
    tests/test_numba_cuda_kernels.py and tests/test_gradients.py.

    Numba's simulator runs each kernel in Python (about 2 us per multiply-add): there the
    network takes the 18 x 18 centre of the images (the smallest input its layers accept) for
    two steps, about 10 s a step; elsewhere the 28 x 28 images for three steps."""
    from fastconv.applications import lesson_model
    from fastconv.datasets import mnist

    simulated = device.name == "numba-cuda" and "numba-cuda" in EMULATED_DEVICES
    side, steps = (18, 2) if simulated else (28, 3)
    (x, y), _ = mnist.load_data(mnist_dir)
    crop = (28 - side) // 2
    x = x[:steps, crop:crop + side, crop:crop + side].reshape(-1, side, side, 1)
    x = x.astype(np.float32) / 255.0
    y = np.eye(10, dtype=np.float32)[y[:steps]]
    results = {}
    for name in ("numpy", device.name):
        with fastconv.use_backend(name), fastconv.use_conv_algo("direct"):
            set_random_seed(11)
            model = lesson_model(input_shape=(side, side, 1))
            model.compile(optimizer="adam", loss="categorical_crossentropy",
                          metrics=["accuracy"])
            weights = model.get_weights()
            steps_out = [model.train_on_batch(x[i:i + 1], y[i:i + 1]) for i in range(steps)]
            results[name] = np.array(steps_out)
            trained = model.get_weights()
        assert all(not np.array_equal(a, b) for a, b in zip(weights, trained)), name
    np.testing.assert_allclose(results[device.name], results["numpy"], rtol=2e-4, atol=2e-5)
    assert np.isfinite(results["numpy"]).all()


def test_every_primitive_agrees_with_numpy_on_odd_shapes(device):
    """tests/kernel_smoke.py, the script the memory and race checkers run, passes here too."""
    from tests import kernel_smoke

    simulated = device.name == "numba-cuda" and "numba-cuda" in EMULATED_DEVICES
    dtypes = ("float32",) if simulated else ("float32", "float64")  # the simulator is slow
    assert kernel_smoke.run(device.name, dtypes) == []


def test_a_device_index_selects_the_device_and_a_missing_one_is_refused(device):
    with fastconv.use_backend(f"{device.name}:0") as be:
        assert be is device and fastconv.backends.current_device() == 0
    count = device.device_count()
    with pytest.raises(ValueError, match=rf"'{device.name}:{count}': there is .* numbered 0 "
                                         rf"to {count - 1}"):
        with fastconv.use_backend(f"{device.name}:{count}"):
            pass
