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
