"""The lab's rules for logged-model folders and the Model Registry, on an in-memory stand-in for MLflow's tracking
store (the same rules against a real server: test_mlflow_native.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from labserver.ownership import model_folder_refusal, name_owner
from labserver.permissions import ArtifactPathRefused, ArtifactWrite, Decision, artifact_write_target, decide
from labserver.registry import REGISTRY_WRITES, refusal, rule

RED_RUN, BLUE_RUN = "a" * 32, "b" * 32
RED_MODEL, BLUE_MODEL = "m-" + "1" * 32, "m-" + "2" * 32
TEAMS = ["red", "blue", "red-2"]


class FakeStore:
    """Experiments 1 (red) and 2 (blue), one run and one logged model each."""

    experiments = {"1": "red", "2": "blue", "3": "red-2"}
    runs = {RED_RUN: "1", BLUE_RUN: "2"}
    models = {RED_MODEL: "1", BLUE_MODEL: "2"}

    def get_experiment(self, experiment_id):
        return SimpleNamespace(
            experiment_id=experiment_id,
            name=self.experiments[experiment_id],
            artifact_location=f"mlflow-artifacts:/{experiment_id}",
        )

    def get_experiment_by_name(self, name):
        found = [key for key, value in self.experiments.items() if value == name]
        return self.get_experiment(found[0]) if found else None

    def get_run(self, run_id):
        return SimpleNamespace(info=SimpleNamespace(experiment_id=self.runs[run_id]))

    def get_logged_model(self, model_id):
        return SimpleNamespace(experiment_id=self.models[model_id])


ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"


def test_artifact_writes_name_a_run_or_a_logged_model_folder():
    assert artifact_write_target(f"{ARTIFACTS}/1/{RED_RUN}/artifacts/a/b.txt", "PUT") == ArtifactWrite("1", RED_RUN)
    model_file = f"{ARTIFACTS}/1/models/{RED_MODEL}/artifacts/data/model.pt2"
    assert artifact_write_target(model_file, "PUT") == ArtifactWrite("1", model_id=RED_MODEL)
    assert artifact_write_target(model_file, "DELETE") == ArtifactWrite("1", model_id=RED_MODEL)
    assert artifact_write_target(model_file, "GET") is None  # reading is basic-auth's
    assert artifact_write_target("/api/2.0/mlflow/runs/create", "POST") is None
    mpu = f"/api/2.0/mlflow-artifacts/mpu/create/1/models/{RED_MODEL}/artifacts/x"
    assert artifact_write_target(mpu, "POST") == ArtifactWrite("1", model_id=RED_MODEL)


@pytest.mark.parametrize(
    "tail",
    [
        "1/loose.txt",
        "1/models/loose.txt",
        f"1/models/{RED_MODEL}/elsewhere.txt",
        f"1/models/{RED_MODEL}/artifacts/../../x",
        f"1/models/{RED_MODEL}/artifacts/a//b",
        f"1/models/{RED_MODEL}/artifacts/%2E%2E/x",
        f"1/models/{RED_MODEL}/artifacts/%252E%252E/x",
        f"1/models/{RED_MODEL}/artifacts/a\\..\\..\\x",
        f"1/models/{RED_MODEL}/artifacts/",
        "1/models/m-xyz/artifacts/x",
    ],
)
def test_artifact_writes_outside_those_folders_are_refused(tail):
    with pytest.raises(ArtifactPathRefused):
        artifact_write_target(f"{ARTIFACTS}/{tail}", "PUT")


def test_a_model_folder_takes_files_from_its_team_and_only_for_its_own_models():
    store = FakeStore()
    assert model_folder_refusal(store, "1", RED_MODEL, "red", admin=False) is None
    assert model_folder_refusal(store, "1", RED_MODEL, "admin", admin=True) is None
    status, message = model_folder_refusal(store, "1", RED_MODEL, "blue", admin=False)
    assert status == 403 and "experiment 1 is team red's" in message
    assert model_folder_refusal(store, "2", RED_MODEL, "blue", admin=False)[0] == 400  # red's model, blue's folder
    assert model_folder_refusal(store, "1", "m-" + "9" * 32, "red", admin=False)[0] == 400  # no such model
    assert model_folder_refusal(store, "1", "m-" + "9" * 32, "admin", admin=True)[0] == 400


def test_a_registered_model_name_belongs_to_the_longest_matching_team():
    assert name_owner("red-mnist", TEAMS) == "red"
    assert name_owner("red-2-mnist", TEAMS) == "red-2"
    assert name_owner("red-", TEAMS) is None and name_owner("red", TEAMS) is None
    assert name_owner("mnist", TEAMS) is None and name_owner(None, TEAMS) is None
    assert name_owner("Red-mnist", TEAMS) is None


def _refusal(suffix, method, body, caller="blue", query=None):
    return refusal(suffix, method, [body, query or {}], caller, TEAMS, FakeStore())


def test_teams_write_only_registered_models_under_their_own_names():
    assert _refusal("/mlflow/registered-models/create", "POST", {"name": "blue-mnist"}) is None
    assert (
        _refusal("/mlflow/registered-models/create", "POST", {"name": "red-mnist"})
        == f"{rule('blue')}; 'red-mnist' is not one"
    )
    assert _refusal("/mlflow/registered-models/create", "POST", {"name": "red-2-x"}, caller="red")
    assert _refusal("/mlflow/registered-models/create", "POST", {"name": ["blue-x"]})
    assert _refusal("/mlflow/registered-models/rename", "POST", {"name": "blue-a", "new_name": "red-a"})
    assert _refusal("/mlflow/registered-models/alias", "POST", {"name": "red-mnist", "alias": "a", "version": "1"})
    assert _refusal("/mlflow/registered-models/delete", "DELETE", {"name": "red-mnist"}, query={"name": "blue-x"})
    assert _refusal("/mlflow/registered-models/delete", "DELETE", {"name": "blue-x"}, query={"name": "red-mnist"})
    assert _refusal("/mlflow/registered-models/get", "GET", {}, query={"name": "red-mnist"}) is None  # reads pass


def test_prompt_tags_stay_the_admins():
    tags = [{"key": "mlflow.prompt.is_prompt", "value": "true"}]
    assert "prompts are the admin's" in _refusal(
        "/mlflow/registered-models/create", "POST", {"name": "blue-p", "tags": tags}
    )
    assert _refusal(
        "/mlflow/registered-models/set-tag", "POST", {"name": "blue-p", "key": "mlflow.prompt.text", "value": "x"}
    )
    assert (
        _refusal(
            "/mlflow/model-versions/set-tag", "POST", {"name": "blue-p", "version": "1", "key": "team", "value": "x"}
        )
        is None
    )


@pytest.mark.parametrize(
    "body, allowed",
    [
        ({"source": f"models:/{BLUE_MODEL}", "model_id": BLUE_MODEL}, True),
        ({"source": f"runs:/{BLUE_RUN}/model", "run_id": BLUE_RUN}, True),
        ({"source": f"mlflow-artifacts:/2/{BLUE_RUN}/artifacts/model", "run_id": BLUE_RUN}, True),
        ({"source": f"mlflow-artifacts:/2/models/{BLUE_MODEL}/artifacts", "model_id": BLUE_MODEL}, True),
        ({"source": "models:/blue-net/1"}, True),
        ({"source": "models:/blue-net@best"}, True),
        ({"source": f"models:/{RED_MODEL}", "model_id": RED_MODEL}, False),
        ({"source": f"models:/{RED_MODEL}"}, False),
        ({"source": f"models:/{BLUE_MODEL}", "model_id": RED_MODEL}, False),
        ({"source": f"runs:/{RED_RUN}/model", "run_id": RED_RUN}, False),
        ({"source": f"runs:/{RED_RUN}/model"}, False),
        ({"source": f"runs:/{BLUE_RUN}/model", "run_id": RED_RUN}, False),
        ({"source": f"mlflow-artifacts:/1/models/{RED_MODEL}/artifacts"}, False),
        ({"source": f"mlflow-artifacts:/2/../1/models/{RED_MODEL}/artifacts"}, False),
        ({"source": f"mlflow-artifacts:/2/%2E%2E/1/{RED_RUN}"}, False),
        ({"source": "mlflow-artifacts:/2"}, False),
        ({"source": "mlflow-artifacts://elsewhere/2/x"}, False),
        ({"source": "mlflow-artifacts:/22/x"}, False),
        ({"source": "s3://bucket/anything"}, False),
        ({"source": "models:/red-mnist/1"}, False),
        ({"source": ["not", "a", "string"]}, False),
    ],
)
def test_a_version_comes_from_the_teams_own_work(body, allowed):
    reason = _refusal("/mlflow/model-versions/create", "POST", {"name": "blue-net", **body})
    assert (reason is None) is allowed, reason
    if not allowed:
        assert "may register only its own work" in reason


def test_registry_writes_are_team_registry_decisions_and_the_rest_of_the_family_stays_the_admins():
    for suffix, method in REGISTRY_WRITES:
        for prefix in ("/api/2.0", "/ajax-api/2.0"):
            assert decide(prefix + suffix, method, has_mlflow_validator=True) is Decision.TEAM_REGISTRY
        assert decide("/api/2.0" + suffix, method, has_mlflow_validator=False) is None
    assert decide("/api/2.0/mlflow/registered-models/get", "GET", True) is Decision.MLFLOW
    assert decide("/api/2.0/mlflow/registered-models/get-latest-versions", "POST", True) is Decision.MLFLOW
    assert decide("/api/2.0/mlflow/registered-models/some-future-write", "POST", True) is Decision.ADMIN_ONLY
    assert decide("/api/2.0/mlflow/prompts/create", "POST", True) is Decision.ADMIN_ONLY
    assert decide("/api/2.0/mlflow/registered-models/permissions/update", "PATCH", True) is Decision.ADMIN_ONLY
    assert decide("/api/2.0/mlflow/webhooks", "POST", True) is Decision.ADMIN_ONLY
