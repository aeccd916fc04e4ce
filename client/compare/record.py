"""`compare --log`: the comparison becomes a run of your team, its note a dev-diary entry, its files artifacts.

The run carries no weights (`lab.kind` = compare), so `TEAM/latest` and `TEAM/best` never pick it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from labclient.compare.document import sections, to_markdown
from labserver.tags import COMPARE_A_TAG, COMPARE_B_TAG, DATASET_TAG, KIND_TAG


def log_comparison(comparison, options, settings) -> dict[str, str]:
    from labclient.store.target import validate_team
    from labclient.tracking.run import create_run

    data = comparison.data
    models, evaluation = data["models"], data["evaluation"]
    team = validate_team(options.team or settings.team)
    tags = {
        KIND_TAG: "compare",
        COMPARE_A_TAG: models["a"]["run_id"],
        COMPARE_B_TAG: models["b"]["run_id"],
        DATASET_TAG: evaluation["dataset"],
    }
    with create_run(team, settings=settings, tracking_uri=options.tracking_uri, tags=tags) as run:
        run.log_params(
            {
                "compare_a": models["a"]["name"],
                "compare_b": models["b"]["name"],
                "dataset": evaluation["dataset"],
                "samples": evaluation["samples"],
            }
        )
        run.log_metrics(
            {
                "accuracy_a": evaluation["a"]["accuracy"],
                "accuracy_b": evaluation["b"]["accuracy"],
                "agreement": evaluation["agreement"],
                "mcnemar_p": evaluation["mcnemar_p"],
                "cost_a": evaluation["a"]["cost"],
                "cost_b": evaluation["b"]["cost"],
            }
        )
        data["logged_run"] = {"name": run.name, "run_id": run.id, "url": run.url}
        folder = run.workdir / "comparison"
        folder.mkdir()
        logged = {**data, "figures": _copy_figures(data.get("figures", {}), folder)}
        (folder / "report.md").write_text(to_markdown(sections(logged, True), folder), encoding="utf-8")
        for path in sorted(folder.iterdir()):
            run.log_artifact(path, "comparison")
        run.log_json(data, "compare.json", "comparison")
        run.note(_note(data))
        run.recorder.flush()
    return data["logged_run"]


def _copy_figures(figures: dict, folder: Path) -> dict:
    copied = {}
    for key, path in figures.items():
        copied[key] = None
        if path:
            copied[key] = str(folder / Path(path).name)
            shutil.copyfile(path, copied[key])
    return copied


def _note(data: dict) -> str:
    models = data["models"]
    lines = [f"### Comparison: {models['a']['name']} vs {models['b']['name']}", ""]
    lines += [f"- {line}" for line in data["summary"]]
    lines += [
        "",
        "Full report: `comparison/report.md`; figures and `comparison/compare.json` are in this run's artifacts.",
    ]
    return "\n".join(lines)
