"""Every tag name the lab writes or reads, in one place, for the server and the client alike.

The server owns a run's identity: only the plugin writes TEAM_TAG and RUN_NUMBER_TAG (and anything under
`lab.verified.`), and names the run `TEAM/run-N` (labserver/identity.py refuses any team's request that would).
Every other tag is the team's own: it describes a run, and never decides identity or rank.
"""

from __future__ import annotations

# server-owned identity
TEAM_TAG = "lab.team"
RUN_NUMBER_TAG = "lab.run_number"
SERVER_OWNED_TAGS = (TEAM_TAG, RUN_NUMBER_TAG)
SERVER_OWNED_TAG_PREFIXES = ("lab.verified.",)

# MLflow's own
RUN_NAME_TAG = "mlflow.runName"
DESCRIPTION_TAG = "mlflow.note.content"  # MLflow renders this tag as the run's (or experiment's) description
USER_TAG = "mlflow.user"  # the run page's "Created by": the team
SOURCE_NAME_TAG = "mlflow.source.name"  # "Source": the trainer file or the script that logged the run
SOURCE_TYPE_TAG = "mlflow.source.type"
GIT_COMMIT_TAG = "mlflow.source.git.commit"

# what a run is
KIND_TAG = "lab.kind"  # train, push or compare
TRAINER_TAG = "lab.trainer"
DATASET_TAG = "lab.dataset"
DEVICE_TAG = "lab.device"
HARDWARE_PREFIX = "lab.hw."  # lab.hw.device, lab.hw.cpu.model, lab.hw.gpu.name, ...
SOURCE_FORMAT_TAG = "lab.source.format"  # push: the format of the file that was pushed
COMPARE_A_TAG = "lab.compare.a"
COMPARE_B_TAG = "lab.compare.b"

# the weights
WEIGHTS_TAG = "lab.weights.sha256"
WEIGHTS_BYTES_TAG = "lab.weights.bytes"
WEIGHTS_FORMAT_TAG = "lab.weights.format"

# journalling and sync
LOCAL_ID_TAG = "lab.local_id"
LOCAL_NAME_TAG = "lab.local_name"
RECOVERED_TAG = "lab.recovered"
GAPS_TAG = "lab.journal.gaps"  # the sequence numbers of journal lines that were damaged and could not be sent


def hardware_tag(key: str) -> str:
    return f"{HARDWARE_PREFIX}{key}"
