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


def run(data=None, pretrain_samples=None, labelled=500, test_samples=None, pretrain_epochs=2,
        epochs=15, fine_tune_epochs=10, batch_size=32, seed=0, verbose=0) -> dict:
    """Pretrain, transfer three ways, and return the accuracies (plus the pretraining one)."""
    set_random_seed(seed)
    rng = np.random.default_rng(seed)
    (x_train, y_train), (x_test, y_test) = mnist.load_data(data)
    x_a, y_a = split(x_train, y_train, [0, 1, 2, 3, 4], pretrain_samples, rng)
    xa_test, ya_test = split(x_test, y_test, [0, 1, 2, 3, 4], test_samples, rng)
    x_b, y_b = split(x_train, y_train, [5, 6, 7, 8, 9], labelled, rng)
    xb_test, yb_test = split(x_test, y_test, [5, 6, 7, 8, 9], test_samples, rng)
    results = {}

    # 1. Pretraining on digits 0-4.
    base = base_layers()
    pretrained = compiled(Sequential([Input((28, 28, 1)), *base, *head_layers("a")],
                                     name="pretrained"), 1e-3)
    pretrained.fit(x_a, y_a, batch_size=batch_size, epochs=pretrain_epochs, verbose=verbose)
    results["pretrained (digits 0-4)"] = pretrained.evaluate(xa_test, ya_test, verbose=0)[1]

    # 2a. Feature extraction: the base frozen, a new head trained.
    for layer in base:
        layer.trainable = False
    transfer = compiled(Sequential([Input((28, 28, 1)), *base, *head_layers("b")],
                                   name="transfer"), 1e-3)
    transfer.fit(x_b, y_b, batch_size=batch_size, epochs=epochs, verbose=verbose)
    results["feature extraction"] = transfer.evaluate(xb_test, yb_test, verbose=0)[1]

    # 2b. Fine-tuning: unfreeze the top block, train on with a 10x lower learning rate.
    base[2].trainable = True  # block2_conv
    compiled(transfer, 1e-4)
    transfer.fit(x_b, y_b, batch_size=batch_size, epochs=fine_tune_epochs, verbose=verbose)
    results["fine-tuning"] = transfer.evaluate(xb_test, yb_test, verbose=0)[1]

    # 2c. From scratch on the same images, as many epochs as both transfer stages together.
    scratch = compiled(Sequential([Input((28, 28, 1)), *base_layers(), *head_layers("c")],
                                  name="scratch"), 1e-3)
    scratch.fit(x_b, y_b, batch_size=batch_size, epochs=epochs + fine_tune_epochs,
                verbose=verbose)
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
