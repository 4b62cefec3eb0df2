"""Polarity on real chest radiographs: after display with the file's own window, the lungs (air,
little attenuation) must be darker than the spine. Both files are MONOCHROME1; the Canon DX file
also says Presentation LUT Shape INVERSE, which names the same inversion: shown once, not twice.

Regions were picked by looking at downscaled renders: a rectangle inside the patient's right
lung (image left; the DX patient's left lung is diseased and dense) and a strip on the spine.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from engine.display import auto_window, render_image
from engine.io import load

# pydicom warns about every non-conforming value it meets; the files here are meant to have them
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

ROOT = Path(__file__).resolve().parents[2]
REAL = ROOT.parent / "shared" / "data" / "dicom"

# (rows, columns) of regions in full-resolution pixel coordinates
CASES = {
    "RG1_UNCR_CR_chest_mono1_explicit.dcm": {
        "lungs": [(slice(320, 1000), slice(240, 700)), (slice(320, 1000), slice(1160, 1560))],
        "spine": (slice(400, 1500), slice(870, 970)),
    },
    "966_DX_chest_mono1_inverse_j2k.dcm": {
        "lungs": [(slice(400, 1300), slice(240, 720))],
        "spine": (slice(600, 1400), slice(930, 1030)),
    },
}
MARGIN = 40  # grey levels of 255 between lung and spine


@cache
def _real_image(name: str):
    path = REAL / name
    if not path.exists():
        pytest.skip(f"{path} is absent (shared data not checked out beside the repo)")
    image = load(path).images[0]
    image.modality_values()  # decode once per test session
    return image


@pytest.fixture(params=sorted(CASES))
def case(request):
    return request.param, _real_image(request.param)


def _means(frame: np.ndarray, regions: dict) -> tuple[list[float], float]:
    lungs = [float(frame[r].mean()) for r in regions["lungs"]]
    return lungs, float(frame[regions["spine"]].mean())


@pytest.mark.slow
def test_lungs_darker_than_spine_with_the_file_window(case):
    name, image = case
    frame = render_image(image)  # default: the file's first window
    assert image.windows and frame.dtype == np.uint8
    lungs, spine = _means(frame, CASES[name])
    assert all(lung < spine - MARGIN for lung in lungs), (lungs, spine)


@pytest.mark.slow
def test_lungs_darker_than_spine_with_auto_window(case):
    name, image = case
    frame = render_image(image, auto_window(image.modality_values()))
    lungs, spine = _means(frame, CASES[name])
    assert all(lung < spine - MARGIN for lung in lungs), (lungs, spine)


@pytest.mark.slow
def test_user_invert_goes_on_top(case):
    name, image = case
    frame = render_image(image, invert=True)
    lungs, spine = _means(frame, CASES[name])
    assert all(lung > spine + MARGIN for lung in lungs)


@pytest.mark.slow
def test_canon_dx_inverse_is_not_inverted_twice():
    name = "966_DX_chest_mono1_inverse_j2k.dcm"
    image = _real_image(name)
    assert (image.photometric, image.presentation_lut_shape) == ("MONOCHROME1", "INVERSE")
    # Stored values: air (lungs) is HIGH in this MONOCHROME1 file, so one inversion makes it dark.
    regions = CASES[name]
    values = image.modality_values()
    assert values[regions["lungs"][0]].mean() > values[regions["spine"]].mean()
    lungs, spine = _means(render_image(image), regions)
    assert lungs[0] < spine - MARGIN


def test_synthetic_monochrome1_inverse_through_the_pipeline(tmp_path):
    """The same rule on a tiny file: high stored value (air) is shown dark, once."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, generate_uid()
    pixels = np.array([[4000, 4000], [100, 100]], dtype=np.uint16)  # top: air, bottom: bone
    ds.set_pixel_data(pixels, "MONOCHROME1", 12)
    ds.PresentationLUTShape = "INVERSE"
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    ds.save_as(tmp_path / "m1.dcm", enforce_file_format=True)
    frame = render_image(load(tmp_path / "m1.dcm").images[0])
    assert frame[0, 0] < 20 and frame[1, 0] > 235
    assert pydicom.dcmread(tmp_path / "m1.dcm").PhotometricInterpretation == "MONOCHROME1"
