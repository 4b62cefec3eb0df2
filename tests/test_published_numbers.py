"""The quality numbers we publish agree with the measurement they come from.

`docs/benchmarks/eval_val_models_fp32.json` is the output of the eval command in the README. The
README's quality table, the model cards and the benchmark itself must describe the same weights
and the same numbers; every new generation of a model rewrites all three, and a number copied by
hand that was not updated is exactly the kind of quality claim we promised not to make.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "docs" / "benchmarks" / "eval_val_models_fp32.json"
MODELS = ROOT / "resources" / "models"

# README columns after protocol and method, with the key in the report's `mean` and its format.
COLUMNS = (("psnr", "{:.2f}"), ("ssim", "{:.4f}"), ("delta_psnr_vs_bicubic", "{:+.2f}"),
           ("ssim_wins_vs_bicubic_pct", "{:.0f}"), ("psnr_interior", "{:.2f}"),
           ("delta_psnr_interior_vs_bicubic", "{:+.2f}"), ("psnr_lungs", "{:.2f}"),
           ("delta_psnr_lungs_vs_bicubic", "{:+.2f}"))


def _cards() -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(MODELS.glob("*.json"))}


def _report() -> dict:
    return json.loads(REPORT.read_text())


def _means(report: dict) -> dict[tuple[str, str], dict]:
    return {(p["protocol"], m["method"]): m for p in report["protocols"] for m in p["methods"]}


def _readme_rows() -> list[list[str]]:
    rows = []
    for line in (ROOT / "README.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 + len(COLUMNS) and cells[0] in ("x4-native", "seed-128to512"):
            rows.append(cells)
    return rows


def _method_name(label: str, cards: dict[str, dict]) -> str:
    """'**Fast** (`cxr-fast-x4`, default)' -> 'cxr-fast-x4'; 'Lanczos' -> 'lanczos'."""
    quoted = re.search(r"`([^`]+)`", label)
    if quoted:
        return quoted.group(1)
    plain = label.replace("*", "").strip()
    for name, card in cards.items():
        if card.get("title") == plain:
            return name
    return plain.lower()


def _readme_value(cell: str) -> str:
    return cell.replace("*", "").replace("dB", "").replace("%", "").replace("−", "-").strip()


def test_the_report_measured_the_shipped_weights():
    cards = _cards()
    models = {m["method"]: m for p in _report()["protocols"] for m in p["methods"] if m["kind"] == "model"}
    assert set(models) == set(cards), "the benchmark must cover exactly the shipped models"
    for name, method in models.items():
        digest = hashlib.sha256((MODELS / f"{name}.safetensors").read_bytes()).hexdigest()
        assert method["sha256"] == digest == cards[name]["sha256"], name


def test_the_cards_carry_the_reports_numbers():
    means = _means(_report())
    for name, card in _cards().items():
        for protocol in ("x4-native", "seed-128to512"):
            measured = means[(protocol, name)]["mean"]
            for key, value in card["metrics"][protocol]["model"].items():
                if key in measured and measured[key] is not None:
                    assert value == pytest.approx(measured[key], abs=6e-4), (name, protocol, key)


def test_the_readme_table_carries_the_reports_numbers():
    cards = _cards()
    means = _means(_report())
    rows = _readme_rows()
    expected = {(protocol, method) for protocol, method in means}
    seen = {(cells[0], _method_name(cells[1], cards)) for cells in rows}
    assert seen == expected, "one README row per protocol and method of the report"
    for cells in rows:
        mean = means[(cells[0], _method_name(cells[1], cards))]["mean"]
        for (key, fmt), cell in zip(COLUMNS, cells[2:], strict=True):
            value = mean[key]
            written = _readme_value(cell)
            if value is None:
                assert written == "", (cells[:2], key)
            else:
                assert written == fmt.format(value), (cells[:2], key, written, value)


def test_every_published_eval_report_is_of_the_shipped_weights_and_in_its_card():
    """A report left behind by weights that were replaced would be a claim about nothing we ship;
    the bf16 reports are the card's `x4-native_bf16` numbers."""
    cards = _cards()
    reports = sorted((ROOT / "docs" / "benchmarks").glob("eval_*.json"))
    assert REPORT in reports
    for path in reports:
        for protocol in json.loads(path.read_text())["protocols"]:
            for method in protocol["methods"]:
                if method["kind"] != "model":
                    continue
                card = cards[method["method"]]
                assert method["sha256"] == card["sha256"], (path.name, method["method"])
                if method["settings"].get("resolved_precision") == "bf16":
                    stored = card["metrics"][f"{protocol['protocol']}_bf16"]["model"]
                    for key in ("psnr", "ssim", "psnr_interior", "psnr_lungs"):
                        assert stored[key] == pytest.approx(method["mean"][key], abs=6e-4), (path.name, key)


def test_the_readme_gains_on_the_33_images_no_choice_saw():
    # The README's "How held out the 41 are" table: gains over bicubic on all 41 val images and
    # on the 33 left when the 8 that every training run validated on are skipped.
    from engine.evaluation import compare_reports

    report = _report()
    cards = _cards()
    metrics = ("psnr", "psnr_interior", "psnr_lungs")
    rows = []
    for line in (ROOT / "README.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0] in ("x4-native", "seed-128to512") and " / " in cells[2]:
            rows.append(cells)
    assert {(r[0], _method_name(r[1], cards)) for r in rows} == {
        (p, m) for p in ("x4-native", "seed-128to512") for m in cards}
    for protocol, label, every, unseen in rows:
        method = _method_name(label, cards)
        for cell, skip in ((every, 0), (unseen, 8)):
            measured = {r["metric"]: r["mean"] for r in compare_reports(
                report, report, [("bicubic", method)], skip=skip)
                if r["protocol"] == protocol and r["metric"] in metrics}
            expected = [f"{measured[m]:+.2f}" for m in metrics]
            assert [_readme_value(v) for v in cell.split("/")] == expected, (protocol, method, skip)
