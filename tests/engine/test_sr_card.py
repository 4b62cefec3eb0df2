"""Model cards: JSON round trip, unknown keys kept, clear errors."""

from __future__ import annotations

import json

import pytest

from engine.sr.card import INPUT_CONVENTION, CardError, ModelCard


def full_card() -> ModelCard:
    return ModelCard(
        name="fidelity", title="Fidelity x4", architecture="RRDBNet",
        params={"num_feat": 32, "num_block": 4, "upsample_residual": "bicubic"}, scale=4,
        weights_file="fidelity.safetensors", sha256="ab" * 32, dtype="fp16",
        training={"data": "cxr14", "attribution": "NIH", "degradation": "bicubic x4",
                  "steps": 1000, "compute": "2 CPU cores", "wall_time": "25 min"},
        metrics={"val_psnr_db": {"model": 38.1, "bicubic": 37.4}},
        licence="Apache-2.0", notes="test", default=True,
    )


def test_json_round_trip(tmp_path):
    card = full_card()
    path = card.save(tmp_path / "fidelity.json")
    loaded = ModelCard.load(path)
    assert loaded == card and loaded.path == path
    data = json.loads(path.read_text())
    assert data["input_convention"] == INPUT_CONVENTION and "path" not in data
    assert loaded.weights_path == tmp_path / "fidelity.safetensors"
    assert loaded.display_title == "Fidelity x4"


def test_unknown_keys_survive_a_save(tmp_path):
    data = {"name": "n", "architecture": "RRDBNet", "future_field": [1, 2], "scale": "2"}
    (tmp_path / "n.json").write_text(json.dumps(data))
    card = ModelCard.load(tmp_path / "n.json")
    assert card.extra == {"future_field": [1, 2]} and card.scale == 2
    card.save(tmp_path / "again.json")
    assert json.loads((tmp_path / "again.json").read_text())["future_field"] == [1, 2]


@pytest.mark.parametrize("text, match", [
    ("{broken", "not valid JSON"),
    ("[1, 2]", "not a JSON object"),
    ('{"name": "x"}', "lacks architecture"),
])
def test_bad_cards(tmp_path, text, match):
    (tmp_path / "bad.json").write_text(text)
    with pytest.raises(CardError, match=match):
        ModelCard.load(tmp_path / "bad.json")


def test_missing_card(tmp_path):
    with pytest.raises(CardError, match="Cannot read"):
        ModelCard.load(tmp_path / "none.json")


def test_absolute_weights_path_and_no_weights():
    card = ModelCard(name="x", architecture="RRDBNet", weights_file="/opt/m.safetensors")
    assert str(card.weights_path) == "/opt/m.safetensors"
    assert ModelCard(name="x", architecture="RRDBNet").weights_path is None


def test_protocol_gains_reads_only_numbers_from_a_protocol_entry() -> None:
    from engine.sr.card import protocol_gains

    entry = {"model": {"delta_psnr_vs_bicubic": 3.96, "delta_psnr_interior_vs_bicubic": 2.18,
                       "delta_psnr_lungs_vs_bicubic": None, "ssim_wins_vs_bicubic_pct": 100, "psnr": 39.9},
             "bicubic": {"psnr": 35.97}}
    assert protocol_gains(entry) == {"whole": 3.96, "interior": 2.18, "ssim_wins_pct": 100.0}
    assert protocol_gains({"model": {"delta_psnr_vs_bicubic": "high", "ssim_wins_vs_bicubic_pct": True}}) == {}
    assert protocol_gains("x4-native") == protocol_gains({"model": [1]}) == protocol_gains(None) == {}
