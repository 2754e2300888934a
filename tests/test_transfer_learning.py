"""examples/transfer_learning.py in miniature: a frozen base stays as pretrained while its new
head learns, fine-tuning changes only the unfrozen top block, and the whole run reports the
three accuracies."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "transfer_learning.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("transfer_learning_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_freezing_and_fine_tuning(example, mnist_dir):
    ((x_a, y_a), _), ((x_b, y_b), _) = example.load(mnist_dir, pretrain_samples=200,
                                                    labelled=64, test_samples=10)
    pretrained, base = example.pretrain(x_a, y_a, epochs=1)
    before = [layer.get_weights() for layer in base]
    transfer = example.feature_extraction(base, x_b, y_b, epochs=1)
    head = transfer.layers[-1]
    assert [w.name for w in transfer.trainable_weights] == [
        w.name for layer in transfer.layers[-2:] for w in layer.weights]
    for layer, weights in zip(base, before):
        for got, want in zip(layer.get_weights(), weights):
            np.testing.assert_array_equal(got, want)
    assert not np.array_equal(head.get_weights()[0], pretrained.layers[-1].get_weights()[0])
    example.fine_tune(transfer, base, x_b, y_b, epochs=1)
    np.testing.assert_array_equal(base[0].get_weights()[0], before[0][0])  # block1 frozen
    assert not np.array_equal(base[2].get_weights()[0], before[2][0])  # block2 trained


def test_tiny_run_reports_three_accuracies(example, mnist_dir):
    results = example.run(mnist_dir, pretrain_samples=300, labelled=100, test_samples=200,
                          pretrain_epochs=1, epochs=1, fine_tune_epochs=1)
    for key in ("pretrained (digits 0-4)", "feature extraction", "fine-tuning",
                "from scratch"):
        assert 0.0 <= results[key] <= 1.0
    assert results["test images (digits 5-9)"] == 200
    assert results["pretrained (digits 0-4)"] > 0.5  # 300 images, one epoch: well above 0.2
