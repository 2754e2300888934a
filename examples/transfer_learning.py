"""Transfer learning on MNIST, both of the lesson's methods, end to end, offline.

1. Pretrain a small CNN on the digits 0-4 (all of their training images).
2. Reuse it for the digits 5-9 with only ``--labelled`` (500) labelled images:
   * feature extraction: the pretrained convolutional base is frozen and only a new head
     (a dense layer and a 5-way softmax) is trained;
   * fine-tuning: starting from the feature-extraction model, the top block of the base (the
     last convolution) is unfrozen and everything trainable is trained on, with a learning
     rate ten times lower;
   * from scratch: the same architecture, randomly initialised, trained on the same 500 images.
3. Report each one's accuracy on all test images of the digits 5-9.

Run: ``python examples/transfer_learning.py [--data DIR]`` (MNIST's four files in DIR, or in
``$FASTCONV_DATA``). ``run(...)`` does the same with smaller sizes for the tests.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import fastconv
from fastconv import optimizers
from fastconv.datasets import mnist
from fastconv.layers import Conv2D, Dense, Flatten, Input, MaxPooling2D
from fastconv.models import Sequential
from fastconv.utils import set_random_seed, to_categorical


def base_layers():
    """The convolutional base: two blocks, the second being the 'top block' that fine-tuning
    unfreezes."""
    return [Conv2D(16, 3, activation="relu", name="block1_conv"),
            MaxPooling2D(2, name="block1_pool"),
            Conv2D(32, 3, activation="relu", name="block2_conv"),
            MaxPooling2D(2, name="block2_pool"),
            Flatten(name="flatten")]


def head_layers(prefix: str):
    return [Dense(64, activation="relu", name=f"{prefix}_dense"),
            Dense(5, activation="softmax", name=f"{prefix}_predictions")]


def split(x, y, digits, limit=None, rng=None):
    """Images of ``digits`` with labels 0..len(digits)-1; the first ``limit`` of a shuffle."""
    keep = np.isin(y, digits)
    x, y = x[keep], y[keep] - min(digits)
    if limit is not None:
        order = (rng or np.random.default_rng(0)).permutation(len(x))[:limit]
        x, y = x[order], y[order]
    x = x.reshape(-1, 28, 28, 1).astype("float32") / 255.0
    return x, to_categorical(y, 5)


def compiled(model, learning_rate):
    model.compile(optimizer=optimizers.Adam(learning_rate), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def pretrain(x, y, epochs, batch_size=32, verbose=0):
    """The small CNN trained on digits 0-4; returns (model, its base layers)."""
    base = base_layers()
    model = compiled(Sequential([Input((28, 28, 1)), *base, *head_layers("a")],
                                name="pretrained"), 1e-3)
    model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=verbose)
    return model, base


def feature_extraction(base, x, y, epochs, batch_size=32, verbose=0):
    """Freeze the pretrained base, put a new head on it and train the head only."""
    for layer in base:
        layer.trainable = False
    model = compiled(Sequential([Input((28, 28, 1)), *base, *head_layers("b")],
                                name="transfer"), 1e-3)
    model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=verbose)
    return model


def fine_tune(model, base, x, y, epochs, batch_size=32, verbose=0):
    """Unfreeze the base's top block (block2_conv) and train on with a 10x lower learning
    rate (recompiling, as Keras requires after changing ``trainable``)."""
    base[2].trainable = True
    compiled(model, 1e-4)
    model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=verbose)
    return model


def from_scratch(x, y, epochs, batch_size=32, verbose=0):
    model = compiled(Sequential([Input((28, 28, 1)), *base_layers(), *head_layers("c")],
                                name="scratch"), 1e-3)
    model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=verbose)
    return model


def load(data=None, pretrain_samples=None, labelled=500, test_samples=None, seed=0):
    """((x_a, y_a), (xa_test, ya_test)) for digits 0-4 and the same for 5-9, labels 0-4."""
    rng = np.random.default_rng(seed)
    (x_train, y_train), (x_test, y_test) = mnist.load_data(data)
    return ((split(x_train, y_train, [0, 1, 2, 3, 4], pretrain_samples, rng),
             split(x_test, y_test, [0, 1, 2, 3, 4], test_samples, rng)),
            (split(x_train, y_train, [5, 6, 7, 8, 9], labelled, rng),
             split(x_test, y_test, [5, 6, 7, 8, 9], test_samples, rng)))


def run(data=None, pretrain_samples=None, labelled=500, test_samples=None, pretrain_epochs=2,
        epochs=15, fine_tune_epochs=10, batch_size=32, seed=0, verbose=0) -> dict:
    """Pretrain, transfer three ways, and return the accuracies (plus the pretraining one)."""
    set_random_seed(seed)
    ((x_a, y_a), (xa_test, ya_test)), ((x_b, y_b), (xb_test, yb_test)) = load(
        data, pretrain_samples, labelled, test_samples, seed)
    fit = {"batch_size": batch_size, "verbose": verbose}
    results = {}
    pretrained, base = pretrain(x_a, y_a, pretrain_epochs, **fit)
    results["pretrained (digits 0-4)"] = pretrained.evaluate(xa_test, ya_test, verbose=0)[1]
    transfer = feature_extraction(base, x_b, y_b, epochs, **fit)
    results["feature extraction"] = transfer.evaluate(xb_test, yb_test, verbose=0)[1]
    fine_tune(transfer, base, x_b, y_b, fine_tune_epochs, **fit)
    results["fine-tuning"] = transfer.evaluate(xb_test, yb_test, verbose=0)[1]
    # from scratch on the same images, as many epochs as both transfer stages together
    scratch = from_scratch(x_b, y_b, epochs + fine_tune_epochs, **fit)
    results["from scratch"] = scratch.evaluate(xb_test, yb_test, verbose=0)[1]
    results["test images (digits 5-9)"] = len(xb_test)
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="folder with MNIST's four files (default: "
                                       "$FASTCONV_DATA)")
    parser.add_argument("--labelled", type=int, default=500,
                        help="labelled images of digits 5-9 (default 500)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    results = run(args.data, labelled=args.labelled, seed=args.seed, verbose=0)
    for key, value in results.items():
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        print(f"{key:28s} {shown}")  # noqa: T201 - a script reports
    print(f"backend {fastconv.current_backend_name()}, "  # noqa: T201
          f"{time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
