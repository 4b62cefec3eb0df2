"""JPEG Extended (Process 2 & 4) with 12-bit samples, decoded by python-gdcm directly.

pydicom's GDCM plugin refuses 12-bit JPEG Extended and its other decoder for it is the GPL
pylibjpeg-libjpeg, which this project does not ship. GDCM itself decodes it (its IJG 12-bit
codec; checked against pydicom's reference values for JPGExtended.dcm), so the frame is handed to
gdcm.Image here the same way pydicom's plugin does for the other JPEG syntaxes.
"""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset
from pydicom.encaps import get_frame
from pydicom.uid import JPEGExtended12Bit


def needs_gdcm_jpeg12(ds: Dataset) -> bool:
    """True for JPEG Extended pixel data with more than 8 bits per sample."""
    syntax = ds.file_meta.get("TransferSyntaxUID", "")
    return syntax == JPEGExtended12Bit and int(ds.get("BitsStored", 8) or 8) > 8


def decode_jpeg12(ds: Dataset, index: int | None) -> np.ndarray:
    """One frame (index, or the only one when None) as uint16/int16 (rows, columns)."""
    import gdcm

    frames = int(ds.get("NumberOfFrames", 1) or 1)
    src = get_frame(ds.PixelData, index or 0, number_of_frames=frames)
    rows, columns = int(ds.Rows), int(ds.Columns)
    bits = int(ds.BitsStored)
    signed = int(ds.get("PixelRepresentation", 0) or 0)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)

    fragment = gdcm.Fragment()
    fragment.SetByteStringValue(src)
    fragments = gdcm.SequenceOfFragments.New()
    fragments.AddFragment(fragment)
    element = gdcm.DataElement(gdcm.Tag(0x7FE0, 0x0010))
    element.SetValue(fragments.__ref__())

    image = gdcm.Image()
    image.SetNumberOfDimensions(2)
    image.SetDimensions((columns, rows, 1))
    image.SetDataElement(element)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    image.SetPhotometricInterpretation(
        gdcm.PhotometricInterpretation(gdcm.PhotometricInterpretation.GetPIType(photometric)))
    image.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.GetTSType(JPEGExtended12Bit)))
    image.SetPixelFormat(gdcm.PixelFormat(samples, 16, bits, bits - 1, signed))
    gdcm.Trace.WarningOff()
    buffer = image.GetBuffer().encode("utf-8", "surrogateescape")  # GDCM returns char* as str
    expected = rows * columns * samples * 2
    if len(buffer) != expected:
        raise ValueError(f"GDCM returned {len(buffer)} bytes instead of {expected}")
    arr = np.frombuffer(buffer, dtype="<i2" if signed else "<u2")
    shape = (rows, columns, samples) if samples > 1 else (rows, columns)
    return arr.reshape(shape).copy()
