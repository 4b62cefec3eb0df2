"""Data: patient-aware split, the bicubic path, the realistic chain, worker loading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from engine.evaluation import degrade_x4_native, metrics, upsample_bicubic
from training.data import (
    DataError,
    Pair,
    PatchSampler,
    list_images,
    load_pairs,
    patient_of,
    read_gray_uint8,
    split_by_patient,
    train_val_files,
)
from training.degradations import RealisticDegradation, gaussian_kernel
from training.loader import seed_key, worker_batches

from .conftest import LUNGS


def test_split_by_patient_keeps_each_patient_on_one_side() -> None:
    files = [Path(f"{p:08d}_{i:03d}.png") for p in range(20) for i in range(3)] + [Path("other.png")]
    train, val = split_by_patient(files, 0.2, seed=3)
    assert {patient_of(f) for f in train}.isdisjoint({patient_of(f) for f in val})
    assert sorted(train + val) == sorted(files)
    assert len({patient_of(f) for f in val}) == 4  # 20 % of 21 patients, rounded
    assert split_by_patient(files, 0.2, seed=3) == (train, val)
    assert patient_of("dir/00000404_000.png") == "00000404"


def test_missing_and_empty_folders_say_what_to_fix(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist; point data.train"):
        list_images(tmp_path / "missing")
    with pytest.raises(DataError, match="No PNG, JPEG, TIFF or DICOM images found"):
        list_images(tmp_path)
    pairs = load_pairs(list_images(LUNGS), 4)
    with pytest.raises(DataError, match="smaller than the HR patch"):
        PatchSampler(pairs, 4, 128, 2)


def test_bicubic_pairs_are_the_evaluation_protocol() -> None:
    pairs = load_pairs(list_images(LUNGS), 4)
    for pair in pairs:
        assert pair.hr.shape == (64, 64) and pair.lr.dtype == np.uint8
        np.testing.assert_array_equal(pair.lr, degrade_x4_native(pair.hr))


def test_sampler_bicubic_patches_are_aligned_crops_and_reproducible() -> None:
    pairs = load_pairs(list_images(LUNGS), 4)
    lr, hr = PatchSampler(pairs, 4, 32, 3, seed=5).sample()
    assert lr.shape == (3, 1, 8, 8) and hr.shape == (3, 1, 32, 32)
    lr2, hr2 = PatchSampler(pairs, 4, 32, 3, seed=5).sample()
    np.testing.assert_array_equal(lr, lr2)
    np.testing.assert_array_equal(hr, hr2)
    # aligned: the bicubic enlargement of each LR patch is close to its HR patch, a shifted one is not
    for i in range(3):
        up = upsample_bicubic(lr[i, 0], 4)
        assert metrics(up, hr[i, 0])["psnr"] > 30
        assert metrics(up[:, :-8], hr[i, 0, :, 8:])["psnr"] < metrics(up, hr[i, 0])["psnr"] - 3


def _framed(size: int = 512) -> Pair:
    """A grey image with a 1-pixel white frame, like the frame lines at the edges of NIH images."""
    hr = np.full((size, size), 100, np.uint8)
    hr[0, :] = hr[-1, :] = hr[:, 0] = hr[:, -1] = 255
    return Pair(hr=hr, lr=degrade_x4_native(hr), name="framed.png")


def _frame_sides(hr_patch: np.ndarray) -> int:
    """How many of the patch's four sides are frame (all white)."""
    return sum(bool((side == 255).all()) for side in (hr_patch[0], hr_patch[-1], hr_patch[:, 0], hr_patch[:, -1]))


def test_edge_fraction_snaps_patches_to_the_image_border() -> None:
    pair = _framed()
    lr, hr = PatchSampler([pair], 4, 32, 600, seed=1, edge_fraction=1.0).sample()
    sides = [_frame_sides(np.rint(hr[i, 0] * 255)) for i in range(len(hr))]
    assert min(sides) >= 1  # every patch lies on an edge...
    corners = sum(s == 2 for s in sides) / len(sides)
    assert 0.25 < corners < 0.42  # ...and about one in three on a corner
    # the LR is still the aligned crop of the whole image's LR, border included
    for i in range(5):
        assert metrics(upsample_bicubic(lr[i, 0], 4), hr[i, 0])["psnr"] > 15
    # uniform positions almost never touch the border of a large image
    _, hr0 = PatchSampler([pair], 4, 32, 600, seed=1).sample()
    touching = sum(_frame_sides(np.rint(hr0[i, 0] * 255)) > 0 for i in range(len(hr0)))
    assert touching < 60
    # a quarter snapped: about a quarter (plus the few uniform ones) touch
    _, hr_q = PatchSampler([pair], 4, 32, 600, seed=1, edge_fraction=0.25).sample()
    share = sum(_frame_sides(np.rint(hr_q[i, 0] * 255)) > 0 for i in range(len(hr_q))) / len(hr_q)
    assert 0.18 < share < 0.40
    assert PatchSampler([pair], 4, 32, 1, edge_fraction=0.5).fork(3).edge_fraction == 0.5
    with pytest.raises(DataError, match="edge_fraction"):
        PatchSampler([pair], 4, 32, 1, edge_fraction=1.5)


def _labelled(size: int = 512) -> Pair:
    """A smooth gradient with one small block of 2-pixel black-and-white bars, like burned-in lettering."""
    ramp = np.linspace(60, 160, size, dtype=np.float32)
    hr = np.rint(np.repeat(ramp[:, None], size, axis=1)).astype(np.uint8)
    hr[200:240, 300:380] = np.where((np.arange(80) // 2) % 2 == 0, 255, 0).astype(np.uint8)[None, :]
    return Pair(hr=hr, lr=degrade_x4_native(hr), name="label.png")


def _on_label(hr_patch: np.ndarray) -> bool:
    """The patch shows part of the bar block (both pure black and pure white pixels)."""
    return bool((hr_patch <= 0.01).any() and (hr_patch >= 0.99).any())


def test_hard_fraction_takes_patches_where_bicubic_errs_most() -> None:
    pair = _labelled()
    n = 400
    _, uniform = PatchSampler([pair], 4, 32, n, seed=2).sample()
    _, hard = PatchSampler([pair], 4, 32, n, seed=2, hard_fraction=1.0, hard_candidates=8).sample()
    share_uniform = np.mean([_on_label(uniform[i, 0]) for i in range(n)])
    share_hard = np.mean([_on_label(hard[i, 0]) for i in range(n)])
    # the block (with the patch reach around it) covers under 3 % of positions; 8 tries find it a quarter of the time
    assert share_uniform < 0.08
    assert share_hard > 0.2 and share_hard > 3 * share_uniform
    # hard patches are still aligned (LR, HR) crops
    lr, hr = PatchSampler([pair], 4, 32, 20, seed=3, hard_fraction=1.0).sample()
    for i in range(20):
        if not _on_label(hr[i, 0]):
            assert metrics(upsample_bicubic(lr[i, 0], 4), hr[i, 0])["psnr"] > 30
    # with 0, exactly the old sampling (no extra random numbers)
    np.testing.assert_array_equal(PatchSampler([pair], 4, 32, 50, seed=4, edge_fraction=0.3).sample()[1],
                                  PatchSampler([pair], 4, 32, 50, seed=4, edge_fraction=0.3,
                                               hard_fraction=0.0).sample()[1])
    forked = PatchSampler([pair], 4, 32, 1, hard_fraction=0.5, hard_candidates=4).fork(3)
    assert (forked.hard_fraction, forked.hard_candidates) == (0.5, 4)
    with pytest.raises(DataError, match="hard_fraction"):
        PatchSampler([pair], 4, 32, 1, hard_fraction=2.0)
    with pytest.raises(DataError, match="hard_candidates"):
        PatchSampler([pair], 4, 32, 1, hard_fraction=0.5, hard_candidates=1)


def test_realistic_chain_is_seeded_8bit_and_degrades() -> None:
    hr = load_pairs(list_images(LUNGS), 4)[0].hr
    chain = RealisticDegradation()
    outs = [chain(hr, 4, np.random.default_rng(s)) for s in range(6)]
    assert all(o.shape == (16, 16) and o.dtype == np.uint8 for o in outs)
    np.testing.assert_array_equal(outs[0], chain(hr, 4, np.random.default_rng(0)))
    assert len({o.tobytes() for o in outs}) == 6
    assert any(not np.array_equal(o, degrade_x4_native(hr)) for o in outs)
    kernel = gaussian_kernel(11, 3.0, 0.5, 0.3)
    assert kernel.shape == (11, 11) and abs(kernel.sum() - 1) < 1e-5 and not np.allclose(kernel, kernel.T)


def test_realistic_chain_can_resize_without_antialiasing_as_torch_does() -> None:
    dots = ((np.random.default_rng(0).random((64, 64)) > 0.5) * 255).astype(np.uint8)  # all high frequency
    plain = RealisticDegradation(blur_prob=0.0, noise_prob=0.0, jpeg_prob=0.0, resize_kernels=("bicubic",))
    aliased = RealisticDegradation(blur_prob=0.0, noise_prob=0.0, jpeg_prob=0.0, aliased_prob=1.0,
                                   aliased_kernels=("bicubic",))
    lr = aliased(dots, 4, np.random.default_rng(0))
    want = torch.nn.functional.interpolate(torch.from_numpy(dots / np.float32(255.0))[None, None],
                                           size=(16, 16), mode="bicubic", align_corners=False)[0, 0].numpy()
    np.testing.assert_array_equal(lr, np.clip(np.rint(want * 255), 0, 255).astype(np.uint8))
    # antialiased, the dots average towards grey; aliased, they survive as a false pattern
    assert lr.std() > 2.5 * plain(dots, 4, np.random.default_rng(0)).std()
    # with aliased_prob 0 (the default) the chain draws exactly what it did
    hr = load_pairs(list_images(LUNGS), 4)[0].hr
    for seed in range(4):
        np.testing.assert_array_equal(RealisticDegradation()(hr, 4, np.random.default_rng(seed)),
                                      RealisticDegradation(aliased_prob=0.0)(hr, 4, np.random.default_rng(seed)))


def test_realistic_sampler_makes_lr_on_the_fly() -> None:
    pairs = load_pairs(list_images(LUNGS), 4)
    plain = PatchSampler(pairs, 4, 32, 4, seed=1)
    real = PatchSampler(pairs, 4, 32, 4, seed=1, degradation=RealisticDegradation())
    (lr_a, hr_a), (lr_b, hr_b) = plain.sample(), real.sample()
    np.testing.assert_array_equal(hr_a[0], hr_b[0])  # same first crop, then the chain draws more
    assert lr_b.shape == lr_a.shape and not np.array_equal(lr_a, lr_b)


def test_realistic_fraction_degrades_that_share_and_keeps_the_rest_x4_native() -> None:
    pairs = load_pairs(list_images(LUNGS), 4)
    calls = []

    def chain(hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
        calls.append(1)
        return np.zeros((hr.shape[0] // scale, hr.shape[1] // scale), np.uint8)

    lr, _ = PatchSampler(pairs, 4, 32, 400, seed=5, degradation=chain, degradation_fraction=0.3).sample()
    chained = [i for i in range(400) if not lr[i, 0].any()]
    assert len(calls) == len(chained) and 0.22 < len(chained) / 400 < 0.38
    # the other patches are the aligned x4-native cuts, as without a degradation
    calls.clear()
    lr0, hr0 = PatchSampler(pairs, 4, 32, 30, seed=6, degradation=chain, degradation_fraction=0.0).sample()
    assert not calls
    assert min(metrics(upsample_bicubic(lr0[i, 0], 4), hr0[i, 0])["psnr"] for i in range(30)) > 25
    # with 1 (the default) exactly the old sampling: no extra random numbers
    real = RealisticDegradation()
    np.testing.assert_array_equal(PatchSampler(pairs, 4, 32, 6, seed=7, degradation=real).sample()[0],
                                  PatchSampler(pairs, 4, 32, 6, seed=7, degradation=real,
                                               degradation_fraction=1.0).sample()[0])
    assert PatchSampler(pairs, 4, 32, 1, degradation=chain, degradation_fraction=0.4).fork(2).degradation_fraction == 0.4
    with pytest.raises(DataError, match="degradation_fraction"):
        PatchSampler(pairs, 4, 32, 1, degradation_fraction=1.5)


def _orientations(a: np.ndarray) -> list[np.ndarray]:
    return [np.rot90(b, k) for b in (a, a[:, ::-1]) for k in range(4)]


def test_seed_protocol_fraction_makes_the_protocols_pairs_at_patch_size() -> None:
    """A seed-protocol patch is the whole-image seed-128to512 pair cut at the same place: HR the
    original reduced x2, LR reduced x8 plus the protocol's noise, both on the protocol's grid."""
    from engine.evaluation import SEED_NOISE_STD, torch_bicubic

    rng = np.random.default_rng(0)
    size = 256
    smooth = torch_bicubic(rng.random((40, 40)).astype(np.float32), size)  # texture at every scale
    hr_img = np.rint(smooth * 200 + rng.random((size, size)) * 55).astype(np.uint8)
    pair = Pair(hr=hr_img, lr=degrade_x4_native(hr_img), name="t.png")
    original = hr_img.astype(np.float32) / 255
    whole_hr, whole_lr = torch_bicubic(original, size // 2), torch_bicubic(original, size // 8)
    lr, hr = PatchSampler([pair], 4, 32, 40, seed=3, seed_protocol_fraction=1.0).sample()
    assert lr.shape == (40, 1, 8, 8) and hr.shape == (40, 1, 32, 32)
    residuals = []
    for i in range(40):
        found = None
        for y in range(0, size // 2 - 32 + 1, 4):  # HR positions of crops on the 8-pixel grid
            for x in range(0, size // 2 - 32 + 1, 4):
                ref = whole_hr[y : y + 32, x : x + 32]
                for k, (h_o, l_o) in enumerate(zip(_orientations(ref), _orientations(whole_lr[y // 4 : y // 4 + 8, x // 4 : x // 4 + 8]), strict=True)):
                    # the interior is the whole image's pair exactly (the outer HR row sees the crop's edge)
                    if np.array_equal(hr[i, 0, 1:-1, 1:-1], h_o[1:-1, 1:-1]):
                        found = (k, l_o)
        assert found is not None, f"patch {i} is not the whole image's HR at a grid position"
        residuals.append(lr[i, 0] - found[1])
    noise = np.concatenate([r.ravel() for r in residuals])
    assert abs(noise.mean()) < 0.001 and noise.std() == pytest.approx(SEED_NOISE_STD, rel=0.15)
    assert not np.allclose(lr * 255, np.rint(lr * 255))  # the LR stays float, as the protocol's
    # a share: the others keep the 8-bit x4-native cut
    lr_mix, _ = PatchSampler([pair], 4, 32, 400, seed=4, seed_protocol_fraction=0.3).sample()
    protocol = sum(not np.allclose(lr_mix[i, 0] * 255, np.rint(lr_mix[i, 0] * 255), atol=1e-3) for i in range(400))
    assert 0.22 < protocol / 400 < 0.38
    # 0 (the default) samples exactly what earlier runs did: no extra random numbers
    np.testing.assert_array_equal(PatchSampler([pair], 4, 32, 6, seed=7).sample()[1],
                                  PatchSampler([pair], 4, 32, 6, seed=7, seed_protocol_fraction=0.0).sample()[1])
    assert PatchSampler([pair], 4, 32, 1, seed_protocol_fraction=0.4).fork(2).seed_protocol_fraction == 0.4
    with pytest.raises(DataError, match="seed_protocol_fraction"):
        PatchSampler([pair], 4, 32, 1, seed_protocol_fraction=1.5)
    with pytest.raises(DataError, match="twice the HR patch"):
        PatchSampler([pair], 4, 160, 1, seed_protocol_fraction=0.5)


def test_worker_processes_are_seeded_per_worker_and_deterministic() -> None:
    pairs = load_pairs(list_images(LUNGS), 4)
    sampler = PatchSampler(pairs, 4, 32, 2, seed=0)

    def take(n: int) -> list[torch.Tensor]:
        it = worker_batches(sampler, 2, seed_key(0, 0, 0))
        return [next(it)[1] for _ in range(n)]

    first, second = take(4), take(4)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    assert not torch.equal(first[0], first[1])  # two workers, two streams


def test_without_a_val_folder_whole_patients_are_held_out() -> None:
    train, val = train_val_files(str(LUNGS), None)
    assert len(train) == len(val) == 1 and {patient_of(train[0])} != {patient_of(val[0])}


DICOM = Path(__file__).resolve().parents[3] / "shared" / "data" / "dicom" / "RG1_UNCR_CR_chest_mono1_explicit.dcm"


@pytest.mark.skipif(not DICOM.is_file(), reason="../shared/data/dicom is not beside the checkout")
def test_dicom_is_read_through_engine_io_with_its_window_and_polarity(tmp_path: Path) -> None:
    hr = read_gray_uint8(DICOM)
    assert hr.dtype == np.uint8 and hr.shape == (1955, 1841)
    # MONOCHROME1 shown as a reader sees it: the lung field darker than the image as a whole
    assert hr[900:1000, 300:400].mean() < hr.mean()
    bad = tmp_path / "broken.dcm"
    bad.write_bytes(b"not a dicom file")
    with pytest.raises(DataError, match=r"^broken\.dcm: "):
        read_gray_uint8(bad)
