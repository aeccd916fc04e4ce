"""Plots are small, valid PNGs, and a training run logs all four under plots/."""

from __future__ import annotations

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from labclient.models import evaluation
from labclient.training import plots

pytestmark = pytest.mark.usefixtures("migrated_store")
MAX_PNG_BYTES = 80_000


def _assert_small_png(path, min_size=(200, 200)):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    assert len(data) < MAX_PNG_BYTES, (path, len(data))
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.size[0] >= min_size[0] and image.size[1] >= min_size[1]
        assert np.unique(np.asarray(image.convert("L"))).size > 2  # something was drawn, not a blank canvas


@pytest.fixture
def predictions():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, size=500)
    predicted = labels.copy()
    wrong = rng.choice(500, size=60, replace=False)
    predicted[wrong] = (labels[wrong] + 1 + rng.integers(0, 9, size=60)) % 10
    return labels, predicted


def test_cost_curve_shows_training_and_held_out_cost(tmp_path):
    history = [{"epoch_train_cost": 0.5, "epoch_test_cost": 0.6}, {"epoch_train_cost": 0.3, "epoch_test_cost": 0.4}]
    path = plots.cost_curve(
        [1.0 / (step + 1) for step in range(200)], history, tmp_path / "cost.png", title="blue/run-1"
    )
    _assert_small_png(path)


def test_accuracy_curve(tmp_path):
    history = [{"epoch_test_accuracy": value} for value in (0.81, 0.88, 0.9)]
    _assert_small_png(plots.accuracy_curve(history, tmp_path / "accuracy.png", train_accuracy=0.95))


def test_confusion_counts_match_scikit_learn(predictions):
    from sklearn.metrics import confusion_matrix

    labels, predicted = predictions
    counts = evaluation.confusion_matrix(labels, predicted, 10)
    assert counts.tolist() == confusion_matrix(labels, predicted, labels=range(10)).tolist()
    assert counts.sum() == 500 and np.trace(counts) == 440


def test_confusion_matrix_png(tmp_path, predictions):
    _assert_small_png(plots.confusion_matrix(*predictions, 10, tmp_path / "confusion.png"))


def test_misclassified_grid_shows_only_mistakes(tmp_path, predictions):
    labels, predicted = predictions
    chosen = plots.misclassified_indices(labels, predicted)
    assert len(chosen) == plots.GRID_LIMIT
    assert all(labels[index] != predicted[index] for index in chosen)
    images = np.random.default_rng(1).random((500, 1, 28, 28), dtype=np.float32)
    _assert_small_png(plots.misclassified_grid(images, labels, predicted, tmp_path / "wrong.png"))


def test_misclassified_grid_without_mistakes(tmp_path):
    labels = np.arange(10)
    path = plots.misclassified_grid(np.zeros((10, 1, 8, 8)), labels, labels, tmp_path / "none.png")
    _assert_small_png(path, min_size=(100, 50))


@pytest.mark.slow
def test_training_logs_every_plot(cli, embedded_uri, tmp_path):
    result = cli("train", "--team", "blue", "--trainer", "logreg", "--dataset", "digits", "--epochs", "2")
    assert result.exit_code == 0, result.output
    client = MlflowClient(embedded_uri)
    run = client.search_runs([client.get_experiment_by_name("blue").experiment_id])[0]
    logged = {item.path for item in client.list_artifacts(run.info.run_id, "plots")}
    assert logged == {
        "plots/cost_curve.png",
        "plots/accuracy.png",
        "plots/confusion_matrix.png",
        "plots/misclassified.png",
    }
    folder = client.download_artifacts(run.info.run_id, "plots", str(tmp_path))
    for name in logged:
        _assert_small_png(tmp_path / name)
    assert folder.endswith("plots")
