"""The lesson network (``../shared/lesson/lesson_keras.py``) in fastconv, PyTorch and ONNX, all
holding the same weights.

Conv(32, 3x3, relu) -> MaxPool 2x2 -> Conv(64, 3x3, relu) -> MaxPool 2x2 -> Conv(64, 3x3, relu)
-> Flatten -> Dense(64, relu) -> Dense(10, softmax), on 28x28x1 images.

PyTorch's copy takes NCHW input: kernels HWIO -> OIHW, dense kernels (in, out) -> (out, in), and
the first dense kernel's rows are reordered from fastconv's HWC flattening to PyTorch's CHW one.
:func:`check_same_outputs` proves the copy right once, outside any timed region.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np

from fastconv.cli import lesson_model

INPUT_SHAPE = (28, 28, 1)
CLASSES = 10
SEED = 0
#: PyTorch's (and Keras's) Adam, as fastconv's: lr 1e-3, betas 0.9/0.999, epsilon 1e-7.
ADAM = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-7}
#: The lesson's ``model.fit`` batch size.
FIT_BATCH = 32


def reference_weights() -> list[np.ndarray]:
    """The weights every copy of the network starts from (Glorot-uniform, seed 0)."""
    from fastconv.utils import clear_session, set_random_seed

    clear_session()
    set_random_seed(SEED)
    return lesson_model().get_weights()


def fastconv_model(weights, compile: bool = True):
    """A fresh fastconv lesson network holding ``weights``, compiled as the lesson does (Adam,
    categorical cross-entropy; without the accuracy metric, which PyTorch's step does not
    compute either)."""
    model = lesson_model()
    model.set_weights(weights)
    if compile:
        model.compile(optimizer="adam", loss="categorical_crossentropy")
    return model


def torch_model(torch, weights, softmax: bool = True, device: str = "cpu"):
    """The same network as a ``torch.nn.Sequential`` holding ``weights`` (NCHW input). With
    ``softmax=False`` it returns logits, for ``CrossEntropyLoss``."""
    nn = torch.nn
    k1, b1, k2, b2, k3, b3, d1, e1, d2, e2 = weights
    convs = [nn.Conv2d(k.shape[2], k.shape[3], k.shape[:2]) for k in (k1, k2, k3)]
    dense1, dense2 = nn.Linear(*d1.shape), nn.Linear(*d2.shape)
    layers = [convs[0], nn.ReLU(), nn.MaxPool2d(2), convs[1], nn.ReLU(), nn.MaxPool2d(2),
              convs[2], nn.ReLU(), nn.Flatten(), dense1, nn.ReLU(), dense2]
    if softmax:
        layers.append(nn.Softmax(dim=1))
    model = nn.Sequential(*layers)
    # fastconv flattens the last 3x3x64 activation as (h, w, c); PyTorch as (c, h, w).
    side = int(round((d1.shape[0] // k3.shape[3]) ** 0.5))
    d1_chw = d1.reshape(side, side, k3.shape[3], d1.shape[1]).transpose(3, 2, 0, 1)
    with torch.no_grad():
        for conv, k, b in zip(convs, (k1, k2, k3), (b1, b2, b3)):
            conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(k.transpose(3, 2, 0, 1))))
            conv.bias.copy_(torch.from_numpy(b))
        dense1.weight.copy_(torch.from_numpy(np.ascontiguousarray(d1_chw.reshape(d1.shape[1], -1))))
        dense1.bias.copy_(torch.from_numpy(e1))
        dense2.weight.copy_(torch.from_numpy(np.ascontiguousarray(d2.T)))
        dense2.bias.copy_(torch.from_numpy(e2))
    return model.to(device)


def export_onnx(torch, model, path) -> None:
    """Export the PyTorch copy (NCHW input named ``input``, dynamic batch) to ONNX opset 17 with
    the TorchScript exporter (the dynamo exporter needs onnxscript, which the reference extra
    does not install); its deprecation warnings are silenced here only."""
    example = torch.zeros((1, INPUT_SHAPE[2], *INPUT_SHAPE[:2]))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*legacy TorchScript-based ONNX export",
                                category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r"The feature will be removed",
                                category=DeprecationWarning)
        torch.onnx.export(model.cpu().eval(), (example,), str(path), dynamo=False,
                          opset_version=17, input_names=["input"], output_names=["probabilities"],
                          dynamic_axes={"input": {0: "batch"}, "probabilities": {0: "batch"}})


def images(batch: int, seed: int = 1) -> np.ndarray:
    """``batch`` random 28x28x1 float32 images in [0, 1) (NHWC)."""
    return np.random.default_rng(seed).random((batch, *INPUT_SHAPE), dtype=np.float32)


def labels(batch: int, seed: int = 2) -> np.ndarray:
    """``batch`` random class ids (int64)."""
    return np.random.default_rng(seed).integers(0, CLASSES, batch)


def one_hot(ids: np.ndarray) -> np.ndarray:
    out = np.zeros((len(ids), CLASSES), dtype=np.float32)
    out[np.arange(len(ids)), ids] = 1
    return out


def check_same_outputs(expected: np.ndarray, actual: np.ndarray, what: str) -> None:
    """Fail loudly where a reference copy of the network computes something else."""
    if expected.shape != actual.shape or not np.allclose(actual, expected, rtol=1e-3, atol=1e-5):
        diff = (np.abs(actual - expected).max() if expected.shape == actual.shape
                else f"shapes {expected.shape} and {actual.shape}")
        raise AssertionError(f"{what} does not compute the lesson network as fastconv does "
                             f"(largest difference {diff}); its ratios would be meaningless")


def torch_predictor(torch, torch_lesson, weights, device: str, batch: int):
    """``predict()`` running the PyTorch copy on ``batch`` images on ``device`` (the session's
    CPU model, or a fresh copy on a GPU), synchronised so that timings include the work."""
    from . import references

    model = torch_lesson if device == "cpu" else torch_model(
        torch, weights, device=device).eval()
    x = references.nchw(torch, images(batch), device)
    sync = references.torch_sync(torch, device)

    def predict():
        with torch.inference_mode():
            y = model(x)
        sync()
        return y

    return predict


# -- training through model.fit against a PyTorch eager loop ------------------------------------

@functools.cache
def _mnist_train() -> tuple[np.ndarray, np.ndarray] | None:
    from fastconv.datasets import mnist

    try:
        (x_train, y_train), _ = mnist.load_data(download=False)
    except mnist.DatasetNotFoundError:
        return None
    return x_train, y_train


def fit_data(samples: int) -> tuple[np.ndarray, np.ndarray, str]:
    """``samples`` training images (NHWC float32 in [0, 1]), their class ids (int64) and what
    they are: the first MNIST training images where MNIST is found (``$FASTCONV_DATA`` or
    fastconv's cache, never downloaded here), else random images and labels
    (:func:`images`, :func:`labels`). Damaged MNIST files are an error, not a fallback."""
    if samples < 1:
        raise ValueError(f"fit_data: samples must be at least 1, got {samples}")
    found = _mnist_train()
    if found is None:
        return images(samples), labels(samples), "random images"
    x_train, y_train = found
    if samples > len(x_train):
        raise ValueError(f"fit_data: MNIST has {len(x_train)} training images, "
                         f"{samples} were asked for")
    x = x_train[:samples].reshape(-1, *INPUT_SHAPE).astype(np.float32) / np.float32(255)
    return x, y_train[:samples].astype(np.int64), "MNIST training images"


def fastconv_fit(weights, x: np.ndarray, ids: np.ndarray, batch: int = FIT_BATCH):
    """``epoch()``: one ``model.fit(x, y, batch_size=batch, epochs=1, verbose=0,
    shuffle=True)`` epoch of a fresh lesson network holding ``weights``, compiled as the lesson
    does (Adam, categorical cross-entropy, the accuracy metric); returns the epoch's History.
    Build it (and call it) under the backend and algorithm to measure."""
    model = fastconv_model(weights, compile=False)
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    y = one_hot(ids)

    def epoch():
        return model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=True)

    return epoch


def torch_fit(torch, weights, x: np.ndarray, ids: np.ndarray, batch: int = FIT_BATCH,
              device: str = "cpu", seed: int = 0):
    """``epoch()``: the PyTorch eager loop doing what one ``model.fit`` epoch does, on the
    PyTorch copy holding ``weights``: the samples in a new random order, then per batch of
    ``batch`` the host arrays to ``device``, forward, cross-entropy on the logits, backward,
    Adam (Keras's defaults, :data:`ADAM`), the correct predictions counted and the loss read
    back to the host (as fit's metrics and logs do every step); returns the epoch's
    accuracy."""
    model = torch_model(torch, weights, softmax=False, device=device).train()
    optimizer = torch.optim.Adam(model.parameters(), **ADAM)
    loss_fn = torch.nn.CrossEntropyLoss()
    x_nchw = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    rng = np.random.default_rng(seed)

    def epoch() -> float:
        order = rng.permutation(len(x_nchw))
        correct = 0
        for i in range(0, len(order), batch):
            idx = order[i:i + batch]
            xb = torch.from_numpy(x_nchw[idx]).to(device)
            yb = torch.from_numpy(ids[idx]).to(device)
            optimizer.zero_grad(set_to_none=True)
            logits = model(xb)
            loss = loss_fn(logits, yb)
            loss.backward()
            optimizer.step()
            correct += int((logits.argmax(1) == yb).sum())
            loss.item()
        return correct / len(order)

    return epoch
