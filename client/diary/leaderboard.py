"""The leaderboard as the client reads it: labserver's rows, over whatever store the user points at."""

from __future__ import annotations

from labclient.config import get_settings
from labclient.errors import ConfigError
from labclient.store.client import open_client
from labclient.store.target import resolve_target


def leaderboard(
    *, metric: str | None = None, by: str = "team", limit: int | None = None, tracking_uri: str | None = None
) -> list[dict]:
    """Each team's best finished run with weights (`by="team"`), or the best runs (`by="run"`), ranked by `metric`.

    The rows are the ones labserver's page shows (labserver/leaderboard.py), read through an MlflowClient, so the
    embedded store ranks the same way as a shared server."""
    from labserver.errors import LabServerError
    from labserver.leaderboard import DEFAULT_METRIC, leaderboard_rows

    target = resolve_target(get_settings(), tracking_uri)
    try:
        return leaderboard_rows(open_client(target), metric=metric or DEFAULT_METRIC, by=by, limit=limit, target=target)
    except LabServerError as err:  # an unknown metric or ranking: the user's to fix, said in one line
        raise ConfigError(str(err), err.remedy) from None


def left_out(
    *, metric: str | None = None, tracking_uri: str | None = None, ranked: list[dict] | None = None
) -> list[dict]:
    """The teams the board by team leaves out, each with the reason (a plain-MLflow team, a team without a
    finished run, ...). `ranked`: the whole board by team, if already read, so it is not read again."""
    from labserver.errors import LabServerError
    from labserver.leaderboard import DEFAULT_METRIC
    from labserver.leaderboard import left_out as unranked

    target = resolve_target(get_settings(), tracking_uri)
    try:
        return unranked(open_client(target), metric=metric or DEFAULT_METRIC, ranked=ranked)
    except LabServerError as err:
        raise ConfigError(str(err), err.remedy) from None
