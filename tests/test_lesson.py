"""End to end: the lesson's Keras script, run on fastconv with only its imports changed.

The script is read at test time from ``shared/lesson/lesson_keras.py`` (beside the repository,
or under ``$FASTCONV_SHARED``); without it the test fails (see tests/shared.py).
Three textual edits keep the run short, and nothing else is touched:

* ``from keras.<module> import ...`` -> ``from fastconv.<module> import ...`` (the lesson's
  contract: only the import lines change);
* the training set is cut to its first ``TRAIN_IMAGES`` images right after ``load_data()``;
* ``epochs=10`` -> ``epochs=1``.

The test set stays whole (10,000 images, also used as validation data, as the lesson does) and
the model, optimizer, batch size (Keras's default 32) and preprocessing are the lesson's own.
Choosing ``TRAIN_IMAGES``: one epoch, seeds 0-4, numpy backend, test accuracy —
2,000 images: 80-89%; 3,000: 88-90%; 4,000: 90.0-91.9%; 6,000 (188 Adam steps): 92.1-94.6%.
6,000 is the smallest size tried that clears the 90% bar with a margin for every seed; the run
takes a few seconds. The test asserts > 90% with seed 0.
"""

from __future__ import annotations

import re

import pytest

import fastconv
from fastconv.config import DEFAULT_BACKEND
from fastconv.utils import set_random_seed

from . import shared

TRAIN_IMAGES = 6000
SEED = 0


def fastconv_version_of(source: str) -> str:
    lines = source.splitlines()
    imports = [i for i, line in enumerate(lines) if re.match(r"from keras\.\w+ import ", line)]
    assert len(imports) == 4, f"expected the lesson's four Keras imports, found {len(imports)}"
    for i in imports:
        lines[i] = lines[i].replace("from keras.", "from fastconv.", 1)
    assert not any("keras" in line for line in lines if line.startswith(("import", "from")))

    load = [i for i, line in enumerate(lines)
            if line.strip() == "(x_train, y_train), (x_test, y_test) = mnist.load_data()"]
    assert len(load) == 1, "the lesson's load_data() line changed"
    lines.insert(load[0] + 1, f"x_train, y_train = x_train[:{TRAIN_IMAGES}], "
                              f"y_train[:{TRAIN_IMAGES}]")
    text = "\n".join(lines) + "\n"
    assert text.count("epochs=10") == 1, "the lesson's fit() call changed"
    return text.replace("epochs=10", "epochs=1")


def lesson_backend() -> str:
    """The default backend when it runs here, else the numpy reference."""
    return DEFAULT_BACKEND if fastconv.available_backends()[DEFAULT_BACKEND] is None else "numpy"


@pytest.mark.slow
def test_lesson_script_reaches_90_percent(mnist_dir):
    lesson = shared.require("lesson", "lesson_keras.py")
    code = compile(fastconv_version_of(lesson.read_text(encoding="utf-8")), str(lesson), "exec")
    printed = []
    namespace = {"__name__": "__lesson__", "print": printed.append}
    set_random_seed(SEED)
    with fastconv.use_backend(lesson_backend()):
        exec(code, namespace)  # noqa: S102 - the lesson script, rewritten above
    assert len(printed) == 1, "the lesson prints model.evaluate(x_test, y_test)"
    loss, accuracy = printed[0]
    history = namespace["model"].history.history
    assert set(history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert len(history["loss"]) == 1
    assert accuracy == pytest.approx(history["val_accuracy"][0])
    assert accuracy > 0.90, f"test accuracy {accuracy:.4f} after one epoch on {TRAIN_IMAGES}"
    assert loss < 0.5
