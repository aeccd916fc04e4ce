"""Chunked artifact uploads: a large file reaches a run's (or an MLflow 3 logged model's) artifact folder in pieces
small enough for any proxy in front of the server (nginx refuses bodies over 1 MB unless told otherwise).

    POST UPLOAD_CREATE    {"run_id" | "model_id", "path", "size", "sha256"}  ->  {"upload_id", "received", "complete"}
    PUT  UPLOAD_CHUNK     ?upload_id=...&offset=N, the bytes                 ->  {"received"}
    POST UPLOAD_COMPLETE  {"upload_id"}                                      ->  {"path"}

The upload id is derived from (run or model, path, size, sha256), so creating it again resumes it: "received"
says how many bytes the server holds, and a chunk whose answer was lost is not sent again. A chunk is
written at its offset, which may not lie beyond what was received; the same bytes written twice change
nothing. Complete checks the size and sha256 of what arrived and only then writes the file into the
folder through MLflow's artifact repository (a local folder or S3, whatever the server's
--artifacts-destination is); a mismatch discards the upload and the client starts over. A completed
upload leaves a marker, so a complete whose answer was lost answers "complete" to the next create.

The caller must be allowed to update the run or logged model (basic-auth's own rules, as for log-batch and
for finalizing a model), and the path obeys the artifact guard's rules (labserver.permissions). Refusals that
can never pass (a path outside the folder) carry INVALID_PARAMETER_VALUE; a state the client can recover from
(an offset past what arrived, a checksum that failed) is 409 ABORTED, which it retries from create. Parts wait
under LAB_SERVER_HOME/uploads; a day-old part or marker is removed by the next create.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import posixpath
import re
import tempfile
import time
from pathlib import Path
from urllib.parse import quote, urlparse

from flask import jsonify, request

from labserver.caller import current_team, handle_errors, is_admin
from labserver.errors import BadRequest, LabServerError, PermissionDenied
from labserver.permissions import FOLDER_RULE, artifact_write_escapes_folder

KEEP_S = 24 * 3600
_COPY_BLOCK = 1 << 20
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")
_MODEL_ID = re.compile(r"^m-[0-9a-f]{32}$")
_HEX = re.compile(r"^[0-9a-f]+$")


class UploadAborted(LabServerError):
    """The upload cannot go on as sent, but can start again from create."""

    status = 409
    error_code = "ABORTED"


def _staging() -> Path:
    from labserver.config import get_server_settings

    folder = get_server_settings().home / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _files(upload_id: str) -> tuple[Path, Path, Path]:
    folder = _staging()
    return folder / f"{upload_id}.json", folder / f"{upload_id}.part", folder / f"{upload_id}.done"


def _target(body: dict) -> tuple[str, str]:
    """("run_id", id) or ("model_id", id): the run or logged model whose folder the file goes to."""
    run_id, model_id = body.get("run_id"), body.get("model_id")
    if model_id is not None and run_id is None:
        if not (isinstance(model_id, str) and _MODEL_ID.match(model_id)):
            raise BadRequest(f"invalid logged model id {model_id!r}", "give the model's id, m- and 32 hex digits")
        return "model_id", model_id
    if not (isinstance(run_id, str) and _RUN_ID.match(run_id)) or model_id is not None:
        raise BadRequest(f"invalid run id {run_id!r}", "give the run's 32-character id, or a logged model's model_id")
    return "run_id", run_id


def _may_update(kind: str, owner_id: str) -> None:
    from mlflow.server.auth import _authorize_logged_model_id, _authorize_run_id

    caller = current_team()
    if is_admin(caller):
        return
    if kind == "model_id" and not _authorize_logged_model_id(owner_id, "update"):
        raise PermissionDenied(
            f"team {caller!r} cannot add files to logged model {owner_id}", "upload to your own team's models"
        )
    if kind == "run_id" and not _authorize_run_id(owner_id, "update"):
        raise PermissionDenied(f"team {caller!r} cannot add files to run {owner_id}", "upload to your own team's runs")


def _checked_path(kind: str, owner_id: str, path) -> str:
    if not isinstance(path, str) or not path or path.startswith("/") or "\\" in path:
        raise BadRequest(
            f"invalid artifact path {path!r}", "give a relative path inside the run, such as model/model.safetensors"
        )
    folder = f"0/models/{owner_id}" if kind == "model_id" else f"0/{owner_id}"
    if artifact_write_escapes_folder(f"/api/2.0/mlflow-artifacts/artifacts/{folder}/artifacts/{quote(path)}", "PUT"):
        raise BadRequest(FOLDER_RULE, "no empty, '.' or '..' parts in the path")
    return path


def _ticket(upload_id) -> dict:
    if not isinstance(upload_id, str) or len(upload_id) != 32 or not _HEX.match(upload_id):
        raise BadRequest(f"invalid upload id {upload_id!r}", "use the upload_id that create answered")
    try:
        ticket = json.loads(_files(upload_id)[0].read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise UploadAborted(f"no upload {upload_id} is open", "create the upload again") from None
    kind = "model_id" if "model_id" in ticket else "run_id"
    _may_update(kind, ticket[kind])
    return ticket


def _prune(folder: Path) -> None:
    cutoff = time.time() - KEEP_S
    for entry in folder.iterdir():
        try:
            if entry.stat().st_mtime < cutoff:
                entry.unlink()
        except OSError:
            pass  # another worker removed it first


@handle_errors
def create_upload():
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        raise BadRequest("the request body is not a JSON object", 'send {"run_id", "path", "size", "sha256"}')
    kind, owner_id = _target(body)
    size, sha256 = body.get("size"), body.get("sha256")
    sized = isinstance(size, int) and size >= 0
    if not sized or not (isinstance(sha256, str) and len(sha256) == 64 and _HEX.match(sha256)):
        raise BadRequest(
            "size must be a whole number of bytes and sha256 64 lowercase hex digits", "send the file's own"
        )
    path = _checked_path(kind, owner_id, body.get("path"))
    _may_update(kind, owner_id)
    # run ids and model ids ("m-...") never coincide, so neither do their uploads
    upload_id = hashlib.sha256(f"{owner_id}\0{path}\0{size}\0{sha256}".encode()).hexdigest()[:32]
    _prune(_staging())
    ticket, part, done = _files(upload_id)
    if done.exists():
        return jsonify({"upload_id": upload_id, "received": size, "complete": True})
    if not ticket.exists():
        tmp = ticket.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({kind: owner_id, "path": path, "size": size, "sha256": sha256}), encoding="utf-8")
        os.replace(tmp, ticket)
    part.touch()
    return jsonify({"upload_id": upload_id, "received": part.stat().st_size, "complete": False})


@handle_errors
def upload_chunk():
    upload_id, offset = request.args.get("upload_id"), request.args.get("offset", "")
    ticket = _ticket(upload_id)
    if not offset.isdigit():
        raise BadRequest(f"invalid offset {offset!r}", "give the byte offset of the chunk")
    offset = int(offset)
    _, part, _ = _files(upload_id)
    try:
        handle = open(part, "r+b")
    except FileNotFoundError:
        raise UploadAborted(f"no upload {upload_id} is open", "create the upload again") from None
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # workers of one server share the folder
        received = os.fstat(handle.fileno()).st_size
        if offset > received:
            raise UploadAborted(
                f"offset {offset} lies past the {received} bytes received", "create the upload again to resume"
            )
        handle.seek(offset)
        while block := request.stream.read(_COPY_BLOCK):
            if handle.tell() + len(block) > ticket["size"]:
                handle.truncate(received)
                raise UploadAborted(f"more than the {ticket['size']} bytes announced", "create the upload again")
            handle.write(block)
        received = max(received, handle.tell())
    return jsonify({"received": received})


@handle_errors
def complete_upload():
    body = request.get_json(force=True, silent=True)
    upload_id = body.get("upload_id") if isinstance(body, dict) else None
    ticket = _ticket(upload_id)
    meta, part, done = _files(upload_id)
    with open(part, "rb") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        received = os.fstat(handle.fileno()).st_size
        if received < ticket["size"]:
            raise UploadAborted(f"only {received} of {ticket['size']} bytes arrived", "send the rest, then complete")
        digest = hashlib.sha256()
        while block := handle.read(_COPY_BLOCK):
            digest.update(block)
        if received != ticket["size"] or digest.hexdigest() != ticket["sha256"]:
            part.unlink()
            raise UploadAborted(
                "what arrived does not match the announced size and sha256, so it was discarded",
                "upload the file again",
            )
        _store(part, ticket)
        done.touch()
        part.unlink()
    meta.unlink(missing_ok=True)
    return jsonify({"path": ticket["path"]})


def _store(part: Path, ticket: dict) -> None:
    """Into the run's (or logged model's) artifact folder, through the same artifact repository MLflow's upload
    route uses."""
    from mlflow.server.handlers import (
        _get_artifact_repo_mlflow_artifacts,
        _get_tracking_store,
        _get_workspace_scoped_repo_path_if_enabled,
    )
    from mlflow.store.artifact.artifact_repository_registry import (
        get_artifact_repository,
    )

    store, path = _get_tracking_store(), ticket["path"]
    if "model_id" in ticket:
        artifact_uri = store.get_logged_model(ticket["model_id"]).artifact_location
    else:
        artifact_uri = store.get_run(ticket["run_id"]).info.artifact_uri
    folder, name = posixpath.split(path)
    with tempfile.TemporaryDirectory(dir=part.parent) as tmp:
        local = Path(tmp) / name
        os.link(part, local)  # the repository names the file after the local one
        parsed = urlparse(artifact_uri)
        if parsed.scheme == "mlflow-artifacts":
            inside = "/".join(filter(None, [parsed.path.strip("/"), folder]))
            inside = _get_workspace_scoped_repo_path_if_enabled(inside)
            _get_artifact_repo_mlflow_artifacts().log_artifact(str(local), inside)
        else:
            get_artifact_repository(artifact_uri).log_artifact(str(local), folder or None)
