"""The comparison as a document: sections of headings, text, tables and images, rendered to Markdown
or self-contained HTML here, and to the terminal by terminal.py, so all three say the same thing."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from labclient.errors import ConfigError
from labserver.units import human_bytes, human_count

Block = tuple  # ("heading", text) | ("text", text) | ("table", headers, rows) | ("image", path, caption)
#                | ("details", summary, blocks) | ("spark", label, values)


def fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if value and abs(value) < 1e-3:
            return f"{value:.{digits - 1}g}"
        return f"{value:.{digits}f}"
    return str(value)


def sections(data: dict, all_params: bool = False) -> list[Block]:
    name_a, name_b = data["models"]["a"]["name"], data["models"]["b"]["name"]
    heads = ["", f"A: {name_a}", f"B: {name_b}"]
    figures = data.get("figures", {})
    blocks: list[Block] = [("heading", f"{name_a} vs {name_b}")]
    blocks += [("text", line) for line in data["summary"]]
    blocks += _hyperparameters(data["hyperparameters"], heads, all_params)
    blocks += _training(data["training"], heads, figures)
    blocks += _evaluation(data["evaluation"], heads, figures)
    gen = data["generalisation"]
    blocks += [
        ("heading", "4. Generalisation"),
        (
            "table",
            heads,
            [
                (label, fmt(gen["a"][key]), fmt(gen["b"][key]))
                for label, key in (
                    ("training cost (measured)", "train_cost"),
                    ("held-out cost", "test_cost"),
                    ("gap", "gap"),
                    ("training accuracy", "train_accuracy"),
                    ("held-out accuracy", "test_accuracy"),
                    ("overfitting?", "overfitting"),
                )
            ],
        ),
    ]
    blocks += _weights(data["weights"], name_a, name_b)
    blocks += _representations(data["representations"], figures)
    blocks += _compute(data["compute"], heads)
    return blocks


def _hyperparameters(hyper: dict, heads: list[str], all_params: bool) -> list[Block]:
    rows = [(key, fmt(values["a"]), fmt(values["b"])) for key, values in hyper["differing"].items()]
    blocks: list[Block] = [
        ("heading", "1. Hyperparameters and config"),
        ("table", ["differing", *heads[1:]], rows or [("(none)", "", "")]),
    ]
    same = [(key, fmt(value), fmt(value)) for key, value in hyper["same"].items()]
    blocks.append(
        (
            "details",
            f"all {len(rows) + len(same)} hyperparameters (shown with --all-params)",
            [("table", ["same", *heads[1:]], same)],
            all_params,
        )
    )
    return blocks


def _training(training: dict, heads: list[str], figures: dict) -> list[Block]:
    a, b = training["a"], training["b"]
    rows = [
        (label, fmt(a[key]), fmt(b[key]))
        for label, key in (
            ("epochs", "epochs"),
            ("final training cost", "final_train_cost"),
            ("training time (s)", "training_time_s"),
            ("throughput (samples/s)", "samples_per_s"),
            ("device", "device"),
        )
    ]
    for key in sorted(set(a["hardware"]) | set(b["hardware"])):
        rows.append((key, a["hardware"].get(key, "-"), b["hardware"].get(key, "-")))
    blocks: list[Block] = [("heading", "2. Training"), ("table", heads, rows)]
    for side, label in (("a", heads[1]), ("b", heads[2])):
        for key in ("epoch_train_cost", "epoch_test_cost"):
            if training[side]["curves"].get(key):
                blocks.append(("spark", f"{label} {key}", training[side]["curves"][key]))
    if figures.get("cost_curves"):
        blocks.append(("image", figures["cost_curves"], "cost curves, overlaid"))
    return blocks


def _evaluation(ev: dict, heads: list[str], figures: dict) -> list[Block]:
    a, b = ev["a"], ev["b"]

    def claim(m: dict) -> str:
        if m["claimed_accuracy"] is None:
            return "-"
        return fmt(m["claimed_accuracy"]) + (
            "  FLAGGED" if m["claim_flagged"] else "" if m["claim_comparable"] else "  (other data)"
        )

    rows = [
        ("accuracy (measured)", fmt(a["accuracy"]), fmt(b["accuracy"])),
        ("accuracy (claimed)", claim(a), claim(b)),
        (
            "cost (own cost function)",
            f"{fmt(a['cost'])} ({a['cost_function']})",
            f"{fmt(b['cost'])} ({b['cost_function']})",
        ),
    ]
    agreement = [
        ("both correct", str(ev["both_correct"])),
        ("only A correct (b)", str(ev["only_a_correct"])),
        ("only B correct (c)", str(ev["only_b_correct"])),
        ("both wrong", str(ev["both_wrong"])),
        ("prediction agreement", f"{ev['agreement']:.2%}"),
        ("McNemar exact p", fmt(ev["mcnemar_p"])),
        ("significant at 0.05", fmt(ev["significant"])),
    ]
    per_class = [
        (str(k), fmt(x), fmt(y)) for k, (x, y) in enumerate(zip(a["per_class_accuracy"], b["per_class_accuracy"]))
    ]
    blocks: list[Block] = [
        ("heading", f"3. Re-evaluation on the same {ev['samples']} held-out {ev['dataset']} samples"),
        ("table", heads, rows),
        ("table", ["agreement", "count"], agreement),
        ("table", ["class", *heads[1:]], per_class),
    ]
    for key, caption in (
        ("confusion", "confusion matrices (rows: true class)"),
        ("disagreements", "digits the models disagree on"),
    ):
        if figures.get(key):
            blocks.append(("image", figures[key], caption))
    return blocks


def _weights(weights: dict, name_a: str, name_b: str) -> list[Block]:
    verdict = (
        "same architecture"
        if weights["same_architecture"]
        else (
            f"different architectures; tensors that match: {', '.join(weights['matching']) or 'none'}; only in A: "
            f"{', '.join(weights['only_in_a']) or 'none'};"
            f" only in B: {', '.join(weights['only_in_b']) or 'none'}; shapes differ: "
            f"{', '.join(weights['shape_mismatch']) or 'none'}"
        )
    )
    shape = lambda dims: "x".join(map(str, dims)) if dims is not None else "-"  # noqa: E731
    layout = [
        (
            row["name"],
            shape(row["shape_a"]),
            shape(row["shape_b"]),
            fmt(row["parameters_a"]),
            fmt(row["parameters_b"]),
            row["dtype_a"]
            if row["dtype_a"] == row["dtype_b"]
            else f"{row['dtype_a'] or '-'} / {row['dtype_b'] or '-'}",
        )
        for row in weights["layers"]
    ]
    differences = [
        (row["name"], fmt(row["l2_distance"]), fmt(row["relative_difference"]), fmt(row["cosine_similarity"]))
        for row in weights["layers"]
        if row["match"]
    ]
    norms = [
        (f"{side.upper()} {name}", fmt(s["l2"]), fmt(s["mean"]), fmt(s["std"]), fmt(s["max_abs"]))
        for side in ("a", "b")
        for name, s in weights["norms"][side].items()
    ]
    blocks: list[Block] = [
        ("heading", "5. Weights"),
        ("text", f"{verdict}. A = {name_a}, B = {name_b}."),
        ("table", ["tensor", "shape A", "shape B", "params A", "params B", "dtype"], layout),
    ]
    if differences:
        blocks.append(("table", ["matching tensor", "L2 distance", "relative diff", "cosine sim"], differences))
    blocks.append(("table", ["weight norms", "L2", "mean", "std", "max |w|"], norms))
    return blocks


def _representations(reps: dict, figures: dict) -> list[Block]:
    rows = [(name, *(fmt(value, 3) for value in row)) for name, row in zip(reps["layers_a"], reps["cka"])]
    blocks: list[Block] = [
        ("heading", f"6. Representations (linear CKA on {reps['probe_samples']} held-out samples)"),
        ("table", ["A \\ B", *reps["layers_b"]], rows),
    ]
    if figures.get("cka"):
        blocks.append(("image", figures["cka"], "linear CKA between layers"))
    return blocks


def _compute(compute: dict, heads: list[str]) -> list[Block]:
    a, b = compute["a"], compute["b"]
    rows = [
        ("parameters", f"{a['parameters']:,}", f"{b['parameters']:,}"),
        ("MACs per sample", human_count(a["macs_per_sample"]), human_count(b["macs_per_sample"])),
        ("weight file", human_bytes(a["weights_file_bytes"]), human_bytes(b["weights_file_bytes"])),
        (
            "bytes per parameter (tensors / file)",
            f"{a['bytes_per_parameter']:g} / {fmt(a['file_bytes_per_parameter'], 2)}",
            f"{b['bytes_per_parameter']:g} / {fmt(b['file_bytes_per_parameter'], 2)}",
        ),
        (
            f"latency per batch of {a['latency_batch_size']} ({a['latency_device']}, ms)",
            fmt(a["latency_ms_per_batch"], 3),
            fmt(b["latency_ms_per_batch"], 3),
        ),
    ]
    return [("heading", "7. Compute"), ("table", heads, rows)]


# --- Markdown and HTML ---------------------------------------------------------------------------
def check_report_path(path: Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in (".md", ".html", ".htm"):
        raise ConfigError(f"--report {path} must end in .md or .html", "for example --report comparison.md")
    return suffix


def write_report(comparison, path: Path, all_params: bool = True) -> Path:
    suffix = check_report_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blocks = sections(comparison.data, all_params)
    text = to_markdown(blocks, path.parent) if suffix == ".md" else to_html(blocks, comparison.data["models"])
    path.write_text(text, encoding="utf-8")
    return path


def to_markdown(blocks: list[Block], base: Path) -> str:
    out: list[str] = []
    for block in blocks:
        kind = block[0]
        if kind == "heading":
            out.append(("# " if not out else "## ") + block[1])
        elif kind == "text":
            out.append(f"- {block[1]}")
        elif kind == "table":
            out.append(_md_table(block[1], block[2]))
        elif kind == "image":
            out.append(f"![{block[2]}]({_relative(block[1], base)})")
        elif kind == "details":
            out.append(f"<details><summary>{block[1]}</summary>\n\n{to_markdown(block[2], base)}\n</details>")
    return "\n\n".join(out) + "\n"


def _md_table(headers, rows) -> str:
    escape = lambda cell: str(cell).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(map(escape, headers)) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(map(escape, row)) + " |" for row in rows]
    return "\n".join(lines)


def _relative(image: str, base: Path) -> str:
    try:
        return Path(image).resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return Path(image).as_posix()


def to_html(blocks: list[Block], models: dict) -> str:
    title = html.escape(f"{models['a']['name']} vs {models['b']['name']}")
    body = _html_blocks(blocks)
    style = (
        "body{font-family:sans-serif;max-width:1000px;margin:auto}table{border-collapse:collapse;margin:8px 0}"
        "td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}img{max-width:100%}"
    )
    return (
        f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{title}</title><style>{style}</style></head>"
        f"<body>\n{body}\n</body></html>\n"
    )


def _html_blocks(blocks: list[Block]) -> str:
    out: list[str] = []
    for index, block in enumerate(blocks):
        kind = block[0]
        if kind == "heading":
            tag = "h1" if index == 0 else "h2"
            out.append(f"<{tag}>{html.escape(block[1])}</{tag}>")
        elif kind == "text":
            out.append(f"<p>{html.escape(block[1])}</p>")
        elif kind == "table":
            head = "".join(f"<th>{html.escape(str(cell))}</th>" for cell in block[1])
            rows = "".join(
                "<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row) + "</tr>" for row in block[2]
            )
            out.append(f"<table><tr>{head}</tr>{rows}</table>")
        elif kind == "image":
            encoded = base64.b64encode(Path(block[1]).read_bytes()).decode()
            out.append(
                f"<figure><img alt='{html.escape(block[2])}' "
                f"src='data:image/png;base64,{encoded}'><figcaption>{html.escape(block[2])}</figcaption></figure>"
            )
        elif kind == "details":
            out.append(f"<details><summary>{html.escape(block[1])}</summary>{_html_blocks(block[2])}</details>")
    return "\n".join(out)
