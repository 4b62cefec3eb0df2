"""Weight files: every key layout round-trips, RGB folds to gray exactly, bad files say why."""

from __future__ import annotations

import json
import re

import pytest
import torch

from engine.sr.archs import RRDBNet, SRVGGNetCompact
from engine.sr.card import ModelCard
from engine.sr.weights import (
    WeightsError,
    detect,
    file_sha256,
    layout,
    load_model,
    load_state_dict,
    model_hparams,
    read_metadata,
    rgb_to_gray,
    save_model,
    to_canonical,
)
from tests.engine.conftest import run, tiny_compact, tiny_rrdb

IMAGE = torch.rand(1, 1, 12, 16, generator=torch.Generator().manual_seed(1))


# ------------------------------------------------------- writing the foreign layouts in tests


def old_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename BasicSR keys to the original ESRGAN repository's `model.N` layout."""
    blocks = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("body."))
    fixed = {"conv_first": "model.0", "conv_body": f"model.1.sub.{blocks}", "conv_up1": "model.3",
             "conv_up2": "model.6", "conv_hr": "model.8", "conv_last": "model.10"}
    out = {}
    for key, value in state.items():
        if m := re.fullmatch(r"body\.(\d+)\.rdb(\d)\.conv(\d)\.(weight|bias)", key):
            out[f"model.1.sub.{m[1]}.RDB{m[2]}.conv{m[3]}.0.{m[4]}"] = value
        else:
            name, kind = key.rsplit(".", 1)
            out[f"{fixed[name]}.{kind}"] = value
    return out


def intermediate_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    fixed = {"conv_first": "conv_first", "conv_body": "trunk_conv", "conv_up1": "upconv1",
             "conv_up2": "upconv2", "conv_hr": "HRconv", "conv_last": "conv_last"}
    out = {}
    for key, value in state.items():
        if m := re.fullmatch(r"body\.(\d+)\.rdb(\d)\.conv(\d)\.(weight|bias)", key):
            out[f"RRDB_trunk.{m[1]}.RDB{m[2]}.conv{m[3]}.{m[4]}"] = value
        else:
            name, kind = key.rsplit(".", 1)
            out[f"{fixed[name]}.{kind}"] = value
    return out


def rgb_reference(model: torch.nn.Module, gray: torch.Tensor) -> torch.Tensor:
    """The RGB network on the gray image replicated to R, G, B, its outputs averaged."""
    return run(model, gray.repeat(1, model.num_in_ch, 1, 1)).mean(1, keepdim=True)


# ------------------------------------------------------- layouts round trip


@pytest.mark.parametrize("scale", [4, 2, 1])
@pytest.mark.parametrize("wrapper", ["params", "params_ema", "module", "bare"])
def test_basicsr_pth_round_trip(tmp_path, scale, wrapper):
    model = tiny_rrdb(scale, 3, 3, blocks=2)
    state = model.state_dict()
    if wrapper == "module":
        payload = {f"module.{k}": v for k, v in state.items()}
    elif wrapper == "bare":
        payload = dict(state)
    else:
        payload = {wrapper: dict(state)}
    path = tmp_path / "net.pth"
    torch.save(payload, path)

    loaded = load_state_dict(path)
    assert set(loaded) == set(state)
    arch, params = detect(loaded)
    assert arch == "RRDBNet"
    assert params == {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 8, "num_block": 2,
                      "num_grow_ch": 4, "scale": scale, "upsample_residual": None}
    gray, card = load_model(path)
    assert card.scale == scale and card.name == "net" and card.sha256 == file_sha256(path)
    x = IMAGE[..., :12, :12]  # x1 pixel-unshuffles by 4
    torch.testing.assert_close(run(gray, x), rgb_reference(model, x), atol=1e-5, rtol=0)


def test_params_ema_is_preferred(tmp_path):
    plain, ema = tiny_rrdb(seed=1), tiny_rrdb(seed=2)
    torch.save({"params": plain.state_dict(), "params_ema": ema.state_dict()}, tmp_path / "a.pth")
    model, _ = load_model(tmp_path / "a.pth")
    torch.testing.assert_close(run(model, IMAGE), run(ema, IMAGE))


@pytest.mark.parametrize("rename", [old_layout, intermediate_layout], ids=["old", "intermediate"])
def test_esrgan_layouts_round_trip(tmp_path, rename):
    model = tiny_rrdb(4, 3, 3, blocks=3)
    foreign = rename(model.state_dict())
    path = tmp_path / "esrgan.pth"
    torch.save(foreign, path)
    state = load_state_dict(path)
    assert layout(state) == ("old" if rename is old_layout else "intermediate")
    assert to_canonical(state).keys() == model.state_dict().keys()
    assert detect(state)[1]["num_block"] == 3
    gray, card = load_model(path)
    assert card.architecture == "RRDBNet" and "detected" in card.notes
    torch.testing.assert_close(run(gray, IMAGE), rgb_reference(model, IMAGE), atol=1e-5, rtol=0)


@pytest.mark.parametrize("act", ["prelu", "leakyrelu"])
def test_compact_round_trip(tmp_path, act):
    model = tiny_compact(3, 3, convs=2, act=act)
    torch.save({"params": model.state_dict()}, tmp_path / "compact.pth")
    arch, params = detect(load_state_dict(tmp_path / "compact.pth"))
    assert arch == "SRVGGNetCompact"
    assert params == {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 8, "num_conv": 2,
                      "upscale": 4, "act_type": act, "upsample_residual": "nearest"}
    gray, _ = load_model(tmp_path / "compact.pth")
    torch.testing.assert_close(run(gray, IMAGE), rgb_reference(model, IMAGE), atol=1e-5, rtol=0)


@pytest.mark.parametrize("dtype, tol", [("fp32", 0.0), ("fp16", 2e-3)])
@pytest.mark.parametrize("make", [
    lambda: tiny_rrdb(2, residual="bicubic"),
    lambda: tiny_compact(convs=2, act="leakyrelu", scale=3, residual=None),
], ids=["rrdb", "compact"])
def test_safetensors_save_and_load(tmp_path, make, dtype, tol):
    model = make()
    path = tmp_path / "mine.safetensors"
    card = ModelCard(name="mine", title="Mine", architecture="?", licence="Apache-2.0",
                     training={"data": "random"}, metrics={"psnr": {"model": 1, "bicubic": 0}})
    saved = save_model(model, path, card, dtype=dtype)

    assert saved.sha256 == file_sha256(path) and saved.dtype == dtype
    assert saved.weights_file == "mine.safetensors" and saved.scale == model.scale
    assert (saved.architecture, saved.params) == model_hparams(model)
    on_disk = ModelCard.load(tmp_path / "mine.json")
    assert on_disk == saved and on_disk.licence == "Apache-2.0" and on_disk.metrics == card.metrics
    want = torch.float16 if dtype == "fp16" else torch.float32
    assert all(t.dtype == want for t in load_state_dict(path).values())

    for source in (tmp_path / "mine.json", path, on_disk):
        loaded, loaded_card = load_model(source)
        assert loaded_card.name == "mine"
        torch.testing.assert_close(run(loaded, IMAGE), run(model, IMAGE), atol=tol, rtol=tol)


def test_safetensors_without_card_uses_metadata(tmp_path):
    model = tiny_rrdb(4, residual="bicubic")  # the residual cannot be seen in the keys
    save_model(model, tmp_path / "lone.safetensors", write_card=False, dtype="fp32")
    assert not (tmp_path / "lone.json").exists()
    assert json.loads(read_metadata(tmp_path / "lone.safetensors")["params"])[
        "upsample_residual"] == "bicubic"
    loaded, card = load_model(tmp_path / "lone.safetensors")
    assert card.params["upsample_residual"] == "bicubic" and "metadata" in card.notes
    torch.testing.assert_close(run(loaded, IMAGE), run(model, IMAGE), atol=0, rtol=0)



def test_the_same_weights_always_give_the_same_file(tmp_path):
    """safetensors orders its header from a hash map; saved twice, the bytes and sha256 agree."""
    from safetensors.torch import load_file

    model = tiny_compact(convs=2)
    first = save_model(model, tmp_path / "a.safetensors")
    hashes = {save_model(model, tmp_path / f"again{i}.safetensors").sha256 for i in range(4)}
    assert hashes == {first.sha256}
    data = (tmp_path / "a.safetensors").read_bytes()
    size = int.from_bytes(data[:8], "little")
    header = data[8:8 + size]
    assert size % 8 == 0 and header.rstrip(b" ").endswith(b"}")
    keys = list(json.loads(header))
    assert keys == sorted(keys) and "__metadata__" in keys
    assert read_metadata(tmp_path / "a.safetensors")["architecture"] == "SRVGGNetCompact"
    state = load_file(tmp_path / "a.safetensors")
    for key, value in model.state_dict().items():
        assert torch.equal(state[key], value.half())

# ------------------------------------------------------- RGB -> gray


@pytest.mark.parametrize("make", [
    lambda: tiny_rrdb(4, 3, 3, blocks=2),
    lambda: tiny_rrdb(4, 3, 3, residual="bicubic"),
    lambda: tiny_rrdb(2, 3, 3, residual="nearest"),
    lambda: tiny_rrdb(1, 3, 3),
    lambda: tiny_rrdb(4, 1, 3),
    lambda: tiny_compact(3, 3, convs=2),
    lambda: tiny_compact(3, 3, scale=2, act="relu", residual="bicubic"),
], ids=["rrdb4", "rrdb4-bicubic", "rrdb2-nearest", "rrdb1", "rrdb-1in3out", "compact4",
        "compact2-bicubic"])
def test_rgb_to_gray_matches_rgb_network_on_replicated_gray(make):
    rgb = make()
    gray = rgb_to_gray(rgb)
    assert (gray.num_in_ch, model_hparams(gray)[1]["num_out_ch"]) == (1, 1)
    x = torch.rand(2, 1, 16, 20, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(run(gray, x), rgb_reference(rgb, x), atol=1e-5, rtol=0)


def test_rgb_to_gray_on_a_state_dict_in_a_foreign_layout():
    rgb = tiny_rrdb(4, 3, 3, blocks=2)
    gray_state = rgb_to_gray(old_layout(rgb.state_dict()))
    gray = RRDBNet(1, 1, num_feat=8, num_block=2, num_grow_ch=4)
    gray.load_state_dict(gray_state)
    torch.testing.assert_close(run(gray.eval(), IMAGE), rgb_reference(rgb, IMAGE),
                               atol=1e-5, rtol=0)


def test_gray_network_is_left_as_is(tmp_path):
    model = tiny_compact()
    torch.save(model.state_dict(), tmp_path / "g.pt")
    loaded, card = load_model(tmp_path / "g.pt")
    assert isinstance(loaded, SRVGGNetCompact) and card.params["num_in_ch"] == 1
    torch.testing.assert_close(run(loaded, IMAGE), run(model, IMAGE), atol=0, rtol=0)


# ------------------------------------------------------- errors a user can cause


def one_sentence(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text and text.endswith(".") and text[0].isupper()
    return text


class NotWeights:
    """A pickled object: loading it would need this class, i.e. code."""


def test_missing_empty_and_wrong_files(tmp_path):
    with pytest.raises(WeightsError, match="does not exist") as exc:
        load_state_dict(tmp_path / "nope.safetensors")
    one_sentence(exc)
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(WeightsError, match="empty") as exc:
        load_state_dict(tmp_path / "empty.pth")
    one_sentence(exc)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(WeightsError, match="not a weights file"):
        load_state_dict(tmp_path / "notes.txt")
    with pytest.raises(WeightsError, match="folder"):
        load_state_dict(tmp_path)


def test_pickle_that_needs_code_is_refused(tmp_path):
    torch.save({"params": NotWeights()}, tmp_path / "evil.pth")
    with pytest.raises(WeightsError, match="refused for safety.*safetensors") as exc:
        load_state_dict(tmp_path / "evil.pth")
    one_sentence(exc)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_truncated_file(tmp_path, suffix):
    path = tmp_path / f"net{suffix}"
    if suffix == ".pth":
        torch.save(tiny_rrdb().state_dict(), path)
    else:
        save_model(tiny_rrdb(), path, write_card=False)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="truncated or damaged") as exc:
        load_state_dict(path)
    one_sentence(exc)


def test_garbage_file(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage" * 20)
    with pytest.raises(WeightsError, match="truncated or damaged"):
        load_state_dict(tmp_path / "junk.pt")


def test_unknown_key_layout(tmp_path):
    torch.save({"encoder.layer1.weight": torch.zeros(3, 3)}, tmp_path / "other.pth")
    with pytest.raises(WeightsError, match="unknown key layout") as exc:
        load_model(tmp_path / "other.pth")
    one_sentence(exc)


def test_unsupported_old_variant(tmp_path):
    state = old_layout(tiny_rrdb(4, 3, 3).state_dict())
    state["model.13.weight"] = torch.zeros(3, 8, 3, 3)  # an x8 file's third up conv
    with pytest.raises(WeightsError, match="not supported"):
        detect(state)


def test_shape_mismatch_between_card_and_file(tmp_path):
    card = save_model(tiny_rrdb(feat=8), tmp_path / "m.safetensors", dtype="fp32")
    card.params["num_feat"] = 16
    card.sha256 = ""
    card.save(tmp_path / "m.json")
    with pytest.raises(WeightsError, match="Shape mismatch.*conv_first.weight") as exc:
        load_model(tmp_path / "m.json")
    one_sentence(exc)


def test_card_for_other_architecture_lacks_keys(tmp_path):
    card = save_model(tiny_rrdb(blocks=2), tmp_path / "m.safetensors", dtype="fp32")
    card.params["num_block"] = 3
    card.save(tmp_path / "m.json")
    with pytest.raises(WeightsError, match="lack 'body.2"):
        load_model(tmp_path / "m.json")


def test_sha256_mismatch(tmp_path):
    save_model(tiny_rrdb(), tmp_path / "m.safetensors", dtype="fp32")
    save_model(tiny_rrdb(seed=5), tmp_path / "m.safetensors", write_card=False, dtype="fp32")
    with pytest.raises(WeightsError, match="sha256"):
        load_model(tmp_path / "m.json")


def test_unknown_architecture_in_card(tmp_path):
    card = save_model(tiny_rrdb(), tmp_path / "m.safetensors")
    card.architecture = "SwinIR"
    card.save(tmp_path / "m.json")
    with pytest.raises(WeightsError, match="Unknown architecture 'SwinIR'"):
        load_model(tmp_path / "m.json")


def test_save_rejects_bad_arguments(tmp_path):
    with pytest.raises(WeightsError, match="safetensors"):
        save_model(tiny_rrdb(), tmp_path / "m.pth")
    with pytest.raises(WeightsError, match="fp16 or fp32"):
        save_model(tiny_rrdb(), tmp_path / "m.safetensors", dtype="int8")
    with pytest.raises(WeightsError, match="cannot be described"):
        save_model(torch.nn.Conv2d(1, 1, 3), tmp_path / "m.safetensors")
