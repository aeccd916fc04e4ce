"""`labclient compare`: statistics checked by hand, and comparisons of real runs checked against values
recomputed here independently (numpy forward passes straight from the safetensors files)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from labclient.compare import stats
from labclient.compare.core import compare_loaded
from labclient.compare.models import Side
from labclient.exchange import fetch as exchange
from labclient.models.evaluation import Evaluation, confusion_matrix, per_class_accuracy
from labclient.training.data import load_dataset
from tests.client.exchange_support import one_line_error, run_of

TOP_LEVEL_KEYS = {
    "format",
    "models",
    "hyperparameters",
    "training",
    "evaluation",
    "generalisation",
    "weights",
    "representations",
    "compute",
    "figures",
    "logged_run",
    "summary",
}


# --- statistics ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "b, c, expected",
    [
        (0, 0, 1.0),
        (1, 5, 2 * (1 + 6) / 2**6),  # n = 6: P(X <= 1) = (C(6,0) + C(6,1)) / 64
        (2, 8, 2 * (1 + 10 + 45) / 2**10),
        (8, 2, 2 * (1 + 10 + 45) / 2**10),
        (5, 5, 1.0),
        (0, 10, 2 / 2**10),
    ],
)
def test_mcnemar_exact_by_hand(b, c, expected):
    assert stats.mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-15)


def test_mcnemar_agrees_with_scipy_binomial_test():
    from scipy.stats import binomtest

    for b, c in [(3, 17), (40, 61), (120, 95), (0, 1)]:
        assert stats.mcnemar_exact(b, c) == pytest.approx(binomtest(b, b + c, 0.5).pvalue, rel=1e-9)


def test_agreement_table_on_a_tiny_case():
    labels = np.array([0, 1, 2, 0, 1, 2])
    pred_a = np.array([0, 1, 2, 1, 1, 0])  # right on 0, 1, 2, 4
    pred_b = np.array([0, 2, 2, 0, 0, 0])  # right on 0, 2, 3
    table = stats.agreement(pred_a, pred_b, labels)
    assert (table.both_correct, table.only_a_correct, table.only_b_correct, table.both_wrong) == (2, 2, 1, 1)
    assert table.agreement == pytest.approx(3 / 6) and table.disagreements == 3
    assert table.mcnemar_p == pytest.approx(1.0)  # b=2, c=1: 2 * (1 + 3) / 8 = 1
    matrix = confusion_matrix(labels, pred_a, 3)
    assert matrix.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert per_class_accuracy(matrix) == [0.5, 1.0, 0.5]


def test_linear_cka_invariances():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 30))
    q, _ = np.linalg.qr(rng.standard_normal((30, 30)))
    assert stats.linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    assert stats.linear_cka(x, x @ q) == pytest.approx(1.0, abs=1e-12)  # orthogonal rotation
    assert stats.linear_cka(x, 5.0 * x + 3.0) == pytest.approx(1.0, abs=1e-12)  # scale and shift
    assert stats.linear_cka(x, rng.standard_normal((200, 7))) < 0.3  # unrelated, other width
    assert stats.linear_cka(x, x[:, :20]) < 1.0


def test_weight_differences_by_hand():
    diff = stats.tensor_diff(np.array([3.0, 4.0]), np.array([0.0, 4.0]))
    assert diff == {"l2_distance": 3.0, "relative_difference": 3.0 / 5.0, "cosine_similarity": 16.0 / 20.0}


# --- real runs ----------------------------------------------------------------------------------
def _forward(entry, x: np.ndarray) -> np.ndarray:
    """Flatten -> Linear -> Sigmoid -> Linear -> Sigmoid straight from the file, no torch module involved."""
    tensors = load_file(str(entry.weights_path))
    hidden = 1 / (1 + np.exp(-(x.reshape(len(x), -1) @ tensors["1.weight"].T + tensors["1.bias"])))
    return 1 / (1 + np.exp(-(hidden @ tensors["3.weight"].T + tensors["3.bias"])))


def _side(key: str, reference: str) -> Side:
    fetched = exchange.fetch(reference)
    return Side(key, fetched, fetched.load_model())


# slow: the tests below read the runs that the session's exchange_lab fixture trains (tests/client/conftest.py)
@pytest.mark.slow
def test_compare_two_runs_against_independent_values(cli, lab, tmp_path):
    report = tmp_path / "out" / "report.md"
    result = cli("compare", "red/run-2", "blue/run-1", "--json", "--report", str(report))
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert set(data) == TOP_LEVEL_KEYS and data["format"] == "labcompare/1"
    assert data["models"]["a"]["name"] == "red/run-2" and data["models"]["b"]["name"] == "blue/run-1"

    digits = load_dataset("digits", None, None)
    entries = {name: exchange.fetch(name).entry for name in ("red/run-2", "blue/run-1")}
    outputs = {name: _forward(entry, digits.test_x) for name, entry in entries.items()}
    pred_a, pred_b = outputs["red/run-2"].argmax(1), outputs["blue/run-1"].argmax(1)
    evaluation = data["evaluation"]
    assert evaluation["samples"] == len(digits.test_y) == 360
    assert evaluation["a"]["accuracy"] == pytest.approx(np.mean(pred_a == digits.test_y), abs=1e-12)
    assert evaluation["b"]["accuracy"] == pytest.approx(np.mean(pred_b == digits.test_y), abs=1e-12)
    for key, name in (("a", "red/run-2"), ("b", "blue/run-1")):
        one_hot = np.eye(10)[digits.test_y]
        cost = np.mean(0.5 * np.sum((outputs[name] - one_hot) ** 2, axis=1))
        assert (
            evaluation[key]["cost"] == pytest.approx(cost, rel=1e-5) and evaluation[key]["cost_function"] == "quadratic"
        )
        claimed = run_of(lab.uri, name).data.metrics
        assert evaluation[key]["claimed_accuracy"] == claimed["test_accuracy"] and evaluation[key]["claim_comparable"]
        assert not evaluation[key]["claim_flagged"] and evaluation[key]["cost"] == pytest.approx(
            claimed["test_cost"], rel=1e-5
        )
        assert sum(map(sum, evaluation[key]["confusion"])) == 360
    b = int(np.sum((pred_a == digits.test_y) & (pred_b != digits.test_y)))
    c = int(np.sum((pred_a != digits.test_y) & (pred_b == digits.test_y)))
    assert (evaluation["only_a_correct"], evaluation["only_b_correct"]) == (b, c)
    n = b + c
    assert evaluation["mcnemar_p"] == pytest.approx(
        min(1.0, 2 * sum(math.comb(n, k) for k in range(min(b, c) + 1)) / 2**n)
    )
    assert evaluation["agreement"] == pytest.approx(np.mean(pred_a == pred_b))
    per_class = [np.mean(pred_a[digits.test_y == k] == k) for k in range(10)]
    assert evaluation["a"]["per_class_accuracy"] == pytest.approx(per_class)

    assert {"lr", "seed"} <= set(data["hyperparameters"]["differing"]) and data["hyperparameters"]["same"][
        "hidden"
    ] == "[30]"
    assert data["training"]["a"]["epochs"] == 2 and len(data["training"]["b"]["curves"]["epoch_test_cost"]) == 2
    weights = data["weights"]
    assert weights["same_architecture"] and not weights["only_in_a"] and not weights["only_in_b"]
    tensors = {name: load_file(str(entry.weights_path)) for name, entry in entries.items()}
    for row in weights["layers"]:
        difference = tensors["red/run-2"][row["name"]].astype(np.float64) - tensors["blue/run-1"][row["name"]]
        assert row["l2_distance"] == pytest.approx(np.linalg.norm(difference), rel=1e-9)
    compute = data["compute"]["a"]
    assert compute["parameters"] == 2260 and compute["macs_per_sample"] == 2220
    assert (
        compute["weights_file_bytes"] == entries["red/run-2"].weights_path.stat().st_size
        and compute["latency_ms_per_batch"] > 0
    )
    reps = data["representations"]
    assert reps["layers_a"] == ["2:Sigmoid", "output"] and all(0 <= v <= 1 + 1e-9 for row in reps["cka"] for v in row)

    assert report.is_file() and "## 3. Re-evaluation" in report.read_text()
    for figure in ("cost_curves", "confusion", "disagreements", "cka"):
        path = data["figures"][figure]
        assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
        assert f"report_files/{figure}.png" in report.read_text()


@pytest.mark.slow
def test_a_model_against_itself(lab):
    a, b = _side("a", "red/run-2"), _side("b", "red/run-2")
    data = compare_loaded(a, b, load_dataset("digits", None, None)).data
    evaluation = data["evaluation"]
    assert evaluation["agreement"] == 1.0 and evaluation["mcnemar_p"] == 1.0 and not evaluation["significant"]
    cka = np.array(data["representations"]["cka"])
    assert np.allclose(np.diag(cka), 1.0, atol=1e-9)
    assert all(
        row["l2_distance"] == 0 and row["cosine_similarity"] == pytest.approx(1.0) for row in data["weights"]["layers"]
    )
    assert not data["hyperparameters"]["differing"]


@pytest.mark.slow
def test_rotating_hidden_units_keeps_cka_at_one(cli, lab, tmp_path):
    """Permuting hidden units (an orthogonal map that sigmoid commutes with) gives the same function."""
    entry = exchange.fetch("red/run-2").entry
    tensors = {name: torch.from_numpy(value) for name, value in load_file(str(entry.weights_path)).items()}
    order = torch.randperm(30, generator=torch.Generator().manual_seed(0))
    permuted = {
        "1.weight": tensors["1.weight"][order],
        "1.bias": tensors["1.bias"][order],
        "3.weight": tensors["3.weight"][:, order],
        "3.bias": tensors["3.bias"],
    }
    torch.save(permuted, tmp_path / "permuted.pt")
    assert cli("push", str(tmp_path / "permuted.pt"), "--team", "rotated", "--arch", "64-30-10").exit_code == 0
    data = compare_loaded(_side("a", "red/run-2"), _side("b", "rotated/run-1"), load_dataset("digits", None, None)).data
    assert data["evaluation"]["agreement"] == 1.0
    hidden = data["representations"]["cka"][0][0]
    assert data["representations"]["layers_b"][0] == "2:Sigmoid" and hidden == pytest.approx(1.0, abs=1e-9)
    assert data["weights"]["same_architecture"] and data["weights"]["layers"][0]["l2_distance"] > 1.0


@pytest.mark.slow
def test_different_architectures(lab):
    data = compare_loaded(_side("a", "red/run-1"), _side("b", "red/run-2"), load_dataset("digits", None, None)).data
    weights = data["weights"]
    assert not weights["same_architecture"]
    assert weights["shape_mismatch"] == ["1.weight", "1.bias"] and weights["only_in_b"] == ["3.weight", "3.bias"]
    assert data["representations"]["layers_a"] == ["output"] and len(data["representations"]["cka"][0]) == 2
    logreg = data["evaluation"]["a"]
    assert logreg["cost_function"] == "cross_entropy"
    assert logreg["cost"] == pytest.approx(run_of(lab.uri, "red/run-1").data.metrics["test_cost"], rel=1e-5)
    assert data["compute"]["a"]["parameters"] == 650 and data["compute"]["b"]["parameters"] == 2260


@pytest.mark.slow
def test_a_wrong_claim_is_flagged(cli, lab):
    import labclient

    source = exchange.fetch("red/run-2").entry
    meta = source.meta
    with labclient.start_run(team="boasters") as run:
        run.log_params(
            {
                key: meta["params"][key]
                for key in ("dataset", "dataset_fingerprint", "dataset_input_shape", "dataset_num_classes", "cost")
            }
        )
        run.log_metrics({"test_accuracy": 0.99})
        run.log_weights(
            load_file(str(source.weights_path)), spec=json.loads((source.path / "model" / "spec.json").read_text())
        )
    result = cli("compare", "boasters/run-1", "red/run-2", "--json")
    data = json.loads(result.output)
    assert data["evaluation"]["a"]["claim_flagged"] and not data["evaluation"]["b"]["claim_flagged"]
    assert any("boasters/run-1 claims 0.9900" in line for line in data["summary"])


@pytest.mark.slow
def test_default_references(cli, lab):
    one_line_error(cli("compare", "--team", "blue"), "nothing has been fetched yet", "labclient fetch")
    exchange.fetch("red/run-1")
    data = json.loads(cli("compare", "--team", "blue", "--json").output)
    assert (data["models"]["a"]["name"], data["models"]["b"]["name"]) == ("red/run-1", "blue/run-1")
    one_line_error(cli("compare", "red/run-2"), "no team", "LAB_TEAM")


@pytest.mark.slow
def test_log_stores_a_note_and_artifacts(cli, lab, tmp_path):
    from mlflow.tracking import MlflowClient

    report = tmp_path / "report.html"
    result = cli(
        "compare", "red/run-1", "blue/run-1", "--log", "--team", "notes", "--report", str(report), "--all-params"
    )
    assert result.exit_code == 0, result.output
    assert "logged as notes/run-1" in result.output
    for heading in (
        "1. Hyperparameters",
        "2. Training",
        "3. Re-evaluation",
        "4. Generalisation",
        "5. Weights",
        "6. Representations",
        "7. Compute",
    ):
        assert heading in result.output
    assert "dataset_fingerprint" in result.output  # --all-params shows the parameters both share
    run = run_of(lab.uri, "notes/run-1")
    assert (
        run.data.tags["lab.kind"] == "compare"
        and "Comparison: red/run-1 vs blue/run-1" in run.data.tags["mlflow.note.content"]
    )
    client = MlflowClient(lab.uri)
    files = {item.path for item in client.list_artifacts(run.info.run_id, "comparison")}
    assert {
        "comparison/compare.json",
        "comparison/report.md",
        "comparison/cost_curves.png",
        "comparison/cka.png",
    } <= files
    logged = json.loads(
        open(client.download_artifacts(run.info.run_id, "comparison/compare.json", str(tmp_path))).read()
    )
    assert logged["logged_run"]["name"] == "notes/run-1" and logged["models"]["a"]["name"] == "red/run-1"
    html = report.read_text()
    assert html.startswith("<!doctype html>") and html.count("data:image/png;base64,") == 4
    one_line_error(cli("fetch", "notes/latest"), "no finished run with weights")


@pytest.mark.slow
@pytest.mark.parametrize(
    "references, fragments",
    [
        (("red/run-2", "green/run-1"), ["takes inputs of shape 1x8x8 but green/run-1 takes 1x28x28"]),
        (("red/run-3", "red/run-2"), ["red/run-3 has no weights", "runs of red with weights: red/run-2, red/run-1"]),
        (("red/run-2", "red/run-77"), ["red/run-77 does not exist"]),
    ],
)
def test_bad_comparisons_are_one_line(cli, lab, references, fragments):
    one_line_error(cli("compare", *references), *fragments)


@pytest.mark.slow
def test_different_label_sets_are_refused(cli, lab, tmp_path):
    import pickle

    net = {
        "sizes": [64, 12, 5],
        "weights": [np.ones((12, 64)), np.ones((5, 12))],
        "biases": [np.zeros((12, 1)), np.zeros((5, 1))],
    }
    (tmp_path / "five.pkl").write_bytes(pickle.dumps(net))
    assert cli("push", str(tmp_path / "five.pkl"), "--team", "five-classes", "--dataset", "digits").exit_code == 0
    one_line_error(
        cli("compare", "five-classes/run-1", "red/run-2"),
        "predicts 5 classes but red/run-2 predicts 10",
        "label sets differ",
    )


@pytest.mark.slow
def test_corrupt_cache_entry_during_compare(cli, lab):
    fetched = exchange.fetch("red/run-2")
    fetched.entry.weights_path.resolve().write_bytes(b"garbage")
    one_line_error(
        cli("compare", "red/run-2", "blue/run-1"),
        "cached copy of red/run-2 is corrupt",
        "labclient fetch red/run-2 --force",
    )


def test_overfitting_flag():
    from labclient.compare.core import _generalisation

    def evaluation(cost, accuracy):
        return Evaluation(cost, accuracy, predictions=np.zeros(1, dtype=int), confusion=np.zeros((2, 2), dtype=int))

    assert _generalisation(evaluation(0.05, 0.99), evaluation(0.20, 0.90), 100)["overfitting"]
    assert not _generalisation(evaluation(0.05, 0.99), evaluation(0.055, 0.985), 100)["overfitting"]


def test_readme_documents_the_json_keys():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    section = readme.split("**`--json` keys**", 1)[1].split("\n## ", 1)[0]
    evaluation_keys = {
        "accuracy",
        "cost",
        "per_class_accuracy",
        "confusion",
        "claimed_accuracy",
        "claim_flagged",
        "mcnemar_p",
        "agreement",
    }
    for key in TOP_LEVEL_KEYS | evaluation_keys:
        assert f"`{key}" in section, key
