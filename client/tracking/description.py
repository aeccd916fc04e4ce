"""A run's description (`mlflow.note.content`, the dev-diary entry MLflow's UI shows), stored whole.

MLflow keeps at most MAX_TAG_VAL_LENGTH characters in a run description and silently cuts longer ones, so a longer
entry is kept whole as the artifact diary/entry.md and the description shows its beginning plus a pointer. The
sender stores the drafted entry this way when a run ends; `labclient diary` edits it the same way.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from mlflow.utils.validation import MAX_TAG_VAL_LENGTH

from labclient.tracking.draft import artifact_link
from labserver.tags import DESCRIPTION_TAG

RUN_LIMIT = MAX_TAG_VAL_LENGTH  # 8,000 characters in MLflow 3.17
ENTRY_ARTIFACT = "diary/entry.md"
_TRUNCATION_MARK = "<!-- labclient: the full entry is the artifact diary/entry.md -->"
_POINTER_RULE = "\n\n---\n\n"


def store_run_entry(client, run_id: str, name: str, text: str) -> bool:
    """Save a run's entry through an MlflowClient; True when it was too long and only its start is shown."""
    if len(text) <= RUN_LIMIT:
        client.set_tag(run_id, DESCRIPTION_TAG, text)
        return False
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / Path(ENTRY_ARTIFACT).name
        path.write_text(text, encoding="utf-8")
        # the artifact goes first: if the upload fails, the description is still the old one
        client.log_artifact(run_id, str(path), str(Path(ENTRY_ARTIFACT).parent))
    client.set_tag(run_id, DESCRIPTION_TAG, shortened(text, run_id, name))
    return True


def shortened(text: str, run_id: str, name: str) -> str:
    """The start of a too-long entry, cut at a line break, then a note that says where the rest is."""
    pointer = (
        f"*This entry has {len(text):,} characters; MLflow keeps at most {RUN_LIMIT:,} in a run description, so only "
        f"its beginning is shown here. The full text is the artifact [{ENTRY_ARTIFACT}]"
        f"({artifact_link(run_id, ENTRY_ARTIFACT)}); `labclient diary {name}` prints it.*"
    )
    suffix = f"{_POINTER_RULE}{pointer}\n\n{_TRUNCATION_MARK}\n"
    budget = RUN_LIMIT - len(suffix)
    head = text[:budget]
    cut = head.rfind("\n")
    if cut < budget * 0.8:
        cut = head.rfind(" ")
    head = head[: cut if cut > 0 else budget].rstrip()
    return head + suffix
