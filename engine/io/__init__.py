"""Reading radiographs in and writing results out: numpy + pydicom only (no Qt, no torch).

`scan(path)` streams Images and Problems from a DICOM file, a folder (recursive), a DICOMDIR,
a ZIP, or PNG/JPEG/TIFF files; `load(path)` groups them into Study > Series > Image.
Writing lives in `engine.io.export`.
"""

from engine.io.errors import ReadError
from engine.io.model import Collection, Image, Problem, ScanEvent, Series, Study
from engine.io.scan import NotAnImage, group, load, read_source, scan

__all__ = [
    "Collection", "Image", "NotAnImage", "Problem", "ReadError", "ScanEvent", "Series", "Study",
    "group", "load", "read_source", "scan",
]


def quiet_nonconformance_warnings() -> None:
    """Stop pydicom warning on stderr about non-conforming values it reads (an over-long SH in a
    vendor's header, say): a reader cannot act on them and they bury real messages. For the
    applications' entry points; the library itself never changes pydicom's global settings."""
    from pydicom import config

    config.settings.reading_validation_mode = config.IGNORE
