"""Which pixel spacing a length uses (PS3.3 10.7.1.1): calibrated to the patient, or only at the
detector, where lengths include the geometric magnification."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from engine.io import load
from engine.io.dicom import _pixel_spacing
from tests.engine.test_io_scan import make_dx

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _ds(**tags: object) -> Dataset:
    ds = Dataset()
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    return ds


@pytest.mark.parametrize(("tags", "expected"), [
    # equal to the imager spacing, no calibration type: copied from the detector, not calibrated
    ({"PixelSpacing": [0.16, 0.16], "ImagerPixelSpacing": [0.16, 0.16]},
     ((0.16, 0.16), "ImagerPixelSpacing")),
    # different: the modality corrected it to the patient
    ({"PixelSpacing": [0.14, 0.14], "ImagerPixelSpacing": [0.16, 0.16]},
     ((0.14, 0.14), "PixelSpacing")),
    # equal, but the file says how it was calibrated
    ({"PixelSpacing": [0.16, 0.16], "ImagerPixelSpacing": [0.16, 0.16],
      "PixelSpacingCalibrationType": "GEOMETRY"}, ((0.16, 0.16), "PixelSpacing:GEOMETRY")),
    ({"PixelSpacing": [0.14, 0.15], "PixelSpacingCalibrationType": "fiducial"},
     ((0.14, 0.15), "PixelSpacing:FIDUCIAL")),
    ({"PixelSpacing": [0.2, 0.2]}, ((0.2, 0.2), "PixelSpacing")),
    ({"ImagerPixelSpacing": [0.15, 0.14]}, ((0.15, 0.14), "ImagerPixelSpacing")),
    # unusable Pixel Spacing: the imager spacing is all there is
    ({"PixelSpacing": [0, 0], "ImagerPixelSpacing": [0.15, 0.15]},
     ((0.15, 0.15), "ImagerPixelSpacing")),
    ({"PixelSpacing": [-1, 0.1]}, (None, "none")),
    ({}, (None, "none")),
])
def test_spacing_source(tags: dict, expected: tuple) -> None:
    spacing, source = _pixel_spacing(_ds(**tags), 0)
    assert source == expected[1]
    assert spacing == (pytest.approx(expected[0]) if expected[0] else None)


def test_equal_spacings_read_from_a_file_are_at_the_detector(tmp_path: Path) -> None:
    path = make_dx(tmp_path / "dx.dcm", study_uid=generate_uid(), series_uid=generate_uid(),
                   PixelSpacing=[0.139, 0.139], ImagerPixelSpacing=[0.139, 0.139])
    image = load(path).images[0]
    assert (image.pixel_spacing, image.spacing_source) == ((0.139, 0.139), "ImagerPixelSpacing")


@pytest.mark.parametrize(("tags", "expected"), [
    ({"PixelSpacing": [0.2, 0.1]}, (2.0, 1.0)),  # rows 0.2 mm apart: a pixel twice as tall
    ({"ImagerPixelSpacing": [0.15, 0.18]}, (1.0, 1.2)),  # the ratio holds at the detector too
    ({"PixelAspectRatio": [5, 4]}, (1.25, 1.0)),  # no spacing: Pixel Aspect Ratio (0028,0034)
    ({"PixelSpacing": [0.2, 0.2], "PixelAspectRatio": [5, 4]}, (1.0, 1.0)),  # spacing wins
    ({"PixelSpacing": [0.1395, 0.1394]}, (1.0, 1.0)),  # within 0.1 %: square
    ({"PixelAspectRatio": [1, 100]}, (1.0, 1.0)),  # no detector: a damaged tag, drawn square
    ({"PixelAspectRatio": [0, 1]}, (1.0, 1.0)),
    ({}, (1.0, 1.0)),
])
def test_pixel_aspect(tmp_path: Path, tags: dict, expected: tuple) -> None:
    path = make_dx(tmp_path / "dx.dcm", study_uid=generate_uid(), series_uid=generate_uid(), **tags)
    assert load(path).images[0].pixel_aspect == pytest.approx(expected)
