"""GDCM-decoded syntaxes run in a helper process: a crash there costs one file, not the program."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from pydicom.data import get_testdata_file

from engine.io import ReadError, dicom, isolation, load

from . import crashers

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def bundled(name: str) -> Path:
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"pydicom test file {name} is not installed")
    return Path(path)


def test_jpeg_lossless_decodes_in_a_helper_with_the_same_pixels(monkeypatch):
    path = bundled("SC_rgb_jpeg_gdcm.dcm")  # JPEG Lossless SV1: GDCM only
    calls = []
    real_run = isolation.run
    monkeypatch.setattr(isolation, "run", lambda func, *a, **k: calls.append(func) or real_run(func, *a, **k))
    isolated = load(path).images[0].modality_values()
    assert calls == [dicom._decode_by_pydicom] and isolation._pool is not None
    isolation.set_enabled(False)
    try:
        here = load(path).images[0].modality_values()
    finally:
        isolation.set_enabled(True)
    assert isolated.shape == (100, 100) and np.array_equal(isolated, here)


def test_polite_decoders_stay_in_process(monkeypatch):
    calls = []
    monkeypatch.setattr(isolation, "run", lambda *a, **k: calls.append(a))
    values = load(bundled("MR_small_jp2klossless.dcm")).images[0].modality_values()
    assert values.shape == (64, 64) and calls == []


def test_a_decoder_that_kills_its_process_costs_one_file(monkeypatch):
    path = bundled("SC_rgb_jpeg_gdcm.dcm")
    monkeypatch.setattr(dicom, "_decode_by_pydicom", crashers.abort_like_gdcm)
    with pytest.raises(ReadError, match="decoder crashed.*probably damaged"):
        load(path).images[0].modality_values()
    monkeypatch.undo()  # the next file decodes in a fresh helper
    assert load(path).images[0].modality_values().shape == (100, 100)


def test_a_hung_decoder_is_ended_after_the_timeout():
    with pytest.raises(isolation.DecoderCrashed, match="did not finish within 1 s"):
        isolation.run(crashers.hang, timeout=1.0)
    assert isolation.run(int, "7") == 7


def test_errors_come_back_as_they_are_and_off_means_in_process():
    with pytest.raises(ValueError):
        isolation.run(int, "seven")
    isolation.set_enabled(False)
    try:
        assert isolation.run(os.getpid) == os.getpid()
    finally:
        isolation.set_enabled(True)
    assert isolation.run(os.getpid) != os.getpid()


def test_only_pixel_attributes_cross_to_the_helper():
    import pydicom

    ds = pydicom.dcmread(bundled("SC_rgb_jpeg_gdcm.dcm"))
    ds.PatientName = "Doe^Jane"
    part = dicom._pixel_part(ds)
    assert "PatientName" not in part and "PixelData" in part
    assert part.file_meta.TransferSyntaxUID == ds.file_meta.TransferSyntaxUID
    assert (part.Rows, part.Columns, part.SamplesPerPixel) == (ds.Rows, ds.Columns, ds.SamplesPerPixel)


def test_exiting_does_not_wait_for_a_hung_decoder(tmp_path):
    """A decode hung in a helper when the program ends (a CLI run stopped, the suite finishing):
    the interpreter's exit ends the helper instead of joining it (concurrent.futures would wait
    for the decode, here 60 s; a real hung decoder, forever)."""
    import subprocess
    import sys
    import time

    root = Path(__file__).resolve().parents[2]
    script = (
        "import threading, time\n"
        "from engine.io import isolation\n"
        "from tests.engine import crashers\n"
        "def decode():\n"
        "    try:\n"
        "        isolation.run(crashers.hang, timeout=600)\n"
        "    except Exception:\n"  # ended by the exit: nothing to print while shutting down
        "        pass\n"
        "threading.Thread(target=decode, daemon=True).start()\n"
        "deadline = time.monotonic() + 60\n"
        "while time.monotonic() < deadline and not (isolation._pool and isolation._pool._processes):\n"
        "    time.sleep(0.05)\n"
        "time.sleep(2.0)\n"  # the helper has started and taken the hung decode
        "print('exiting', time.time(), flush=True)\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True,
                          timeout=180)
    ended = time.time()
    assert done.returncode == 0 and "exiting" in done.stdout, done.stderr[-2000:]
    exiting = ended - float(done.stdout.split()[-1])  # the exit alone, not the start-up
    assert exiting < 30, f"exit waited {exiting:.0f} s for the hung decode (60 s)"


def test_no_helper_starts_after_the_exit_stopped_them(monkeypatch):
    monkeypatch.setattr(isolation, "_exiting", False)  # restored after the test
    assert isolation.run(int, "7") == 7
    isolation.shutdown()
    with pytest.raises(isolation.DecoderCrashed, match="program is ending"):
        isolation.run(int, "7")
    assert isolation._pool is None
