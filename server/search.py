"""Paging through MLflow's search_runs: every run that matches, a page at a time."""

from __future__ import annotations

PAGE_SIZE = 200


def iter_runs(
    client,
    experiment_ids: list[str],
    filter_string: str = "",
    order_by: list[str] | None = None,
    page_size: int = PAGE_SIZE,
):
    """Every matching run of an MlflowClient's store, newest first unless `order_by` says otherwise."""
    token = None
    while True:
        page = client.search_runs(
            list(experiment_ids),
            filter_string=filter_string,
            order_by=order_by or ["attributes.start_time DESC"],
            max_results=page_size,
            page_token=token,
        )
        yield from page
        token = page.token
        if not token:
            return
