"""viewer.selftest (`cxr-viewer --self-test`), from the source checkout.

Kept quick: the window and sample checks run on the 256x256 sample only, the model check on a
tiny random network in a temporary models folder (CXR_ENHANCE_MODELS_DIR).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402

from engine.resources import samples_dir  # noqa: E402
from viewer import selftest  # noqa: E402

LOWRES = "cxr14_00002577_000_lowres_256.dcm"
LINE = re.compile(r"^(OK|FAIL) +[^:]+: .+\. \(\d+ ms\)$")


@pytest.fixture
def lowres_only(tmp_path, monkeypatch) -> Path:
    """engine.resources.samples_dir() -> a folder holding only the 256x256 sample."""
    import engine.resources

    folder = tmp_path / "samples"
    folder.mkdir()
    shutil.copy(samples_dir() / LOWRES, folder / LOWRES)
    monkeypatch.setattr(engine.resources, "samples_dir", lambda: folder)
    return folder


@pytest.fixture
def tiny_models(tmp_path, monkeypatch) -> Path:
    import torch

    from engine.sr.archs import SRVGGNetCompact
    from engine.sr.card import ModelCard
    from engine.sr.weights import save_model

    torch.manual_seed(0)
    net = SRVGGNetCompact(num_feat=4, num_conv=1, upscale=4).eval()
    folder = tmp_path / "models"
    folder.mkdir()
    save_model(net, folder / "tiny.safetensors",
               ModelCard(name="tiny", title="Tiny", architecture="?"), dtype="fp32")
    monkeypatch.setenv("CXR_ENHANCE_MODELS_DIR", str(folder))
    return folder


@pytest.fixture
def no_models(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CXR_ENHANCE_MODELS_DIR", str(tmp_path / "empty"))


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_model_check_runs_one_tile_of_each_model(tiny_models):
    out = io.StringIO()
    test = selftest.SelfTest(out, require_model=True)
    test.check_models()
    assert [c.ok for c in test.checks] == [True, True], out.getvalue()
    assert "tiny (user)" in test.checks[0].text or "tiny" in test.checks[0].text
    assert "64x64 -> 256x256 on cpu fp32" in test.checks[1].text
    assert all(LINE.match(line) for line in lines(out)), out.getvalue()


def test_no_model_fails_only_when_required(no_models):
    out = io.StringIO()
    relaxed = selftest.SelfTest(out)
    relaxed.check_models()
    assert relaxed.checks[0].ok and "no models bundled" in relaxed.checks[0].text
    strict = selftest.SelfTest(out, require_model=True)
    strict.check_models()
    assert not strict.checks[0].ok and "no models bundled" in strict.checks[0].text
    assert lines(out)[-1].startswith("FAIL models: no models bundled")


def test_a_broken_model_is_a_failure_not_a_crash(tiny_models):
    (tiny_models / "tiny.safetensors").write_bytes(b"not weights")
    test = selftest.SelfTest(io.StringIO(), require_model=True)
    test.check_models()
    assert not all(c.ok for c in test.checks)


def test_decoders_and_every_transfer_syntax_decode_from_the_checkout():
    out = io.StringIO()
    test = selftest.SelfTest(out)
    test.check_decoders()
    test.check_transfer_syntaxes()
    assert all(c.ok for c in test.checks), out.getvalue()
    assert len(test.checks) == 1 + len(selftest.SELFTEST_FILES)
    assert "openjpeg" in test.checks[0].text and "rle" in test.checks[0].text


def test_bundled_selftest_folder_is_preferred(tmp_path, monkeypatch):
    from pydicom.data import get_testdata_file

    monkeypatch.setattr(selftest, "selftest_dir", lambda: tmp_path)
    name = "MR_small_RLE.dcm"
    assert selftest.selftest_file(name) == Path(get_testdata_file(name, download=False))  # fallback
    shutil.copy(get_testdata_file(name, download=False), tmp_path / name)
    assert selftest.selftest_file(name) == tmp_path / name
    assert selftest.selftest_file("no-such-file.dcm") is None


def test_a_missing_selftest_file_fails_its_line(monkeypatch):
    monkeypatch.setattr(selftest, "SELFTEST_FILES", {"no-such-file.dcm": "Nothing, nobody"})
    out = io.StringIO()
    test = selftest.SelfTest(out)
    test.check_transfer_syntaxes()
    assert lines(out) == [lines(out)[0]] and lines(out)[0].startswith("FAIL decode Nothing:")


def test_qt_check_finds_offscreen_and_loads_the_native_platform_plugin(qapp):
    test = selftest.SelfTest(io.StringIO())
    test.check_qt()
    assert test.checks[0].ok, test.checks[0].text
    assert "offscreen" in test.checks[0].text
    if sys.platform.startswith("linux"):
        assert "xcb loads" in test.checks[0].text


def test_plugin_names():
    assert selftest._plugin_name(Path("libqxcb.so")) == "xcb"
    assert selftest._plugin_name(Path("qwindows.dll")) == "windows"
    assert selftest._plugin_name(Path("libqcocoa.dylib")) == "cocoa"


def test_blank_grab_is_detected(qapp):
    from PySide6.QtGui import QColor, QImage

    blank = QImage(64, 48, QImage.Format.Format_RGB32)
    blank.fill(QColor(30, 30, 30))
    assert selftest._image_stats(blank) == (0.0, 1)


def test_window_check_shows_the_sample_in_the_main_window(qapp, lowres_only):
    text = selftest.render_window(timeout_s=60)
    assert f"main window showed {LOWRES} (256x256)" in text
    assert "grey levels" in text


def test_window_check_falls_back_to_a_label_without_the_main_window(qapp, lowres_only,
                                                                     monkeypatch):
    monkeypatch.setitem(sys.modules, "viewer.main_window", None)  # import fails
    text = selftest.render_window(timeout_s=60)
    assert "main window unavailable" in text and f"rendered {LOWRES} in a QLabel" in text


def test_whole_run_reports_one_line_per_check_and_exit_status(qapp, lowres_only, tiny_models,
                                                              monkeypatch):
    monkeypatch.setattr(selftest, "SELFTEST_FILES", {"MR_small_RLE.dcm": "RLE Lossless, rle"})
    out = io.StringIO()
    assert selftest.run_self_test(out, require_model=True) == 0, out.getvalue()
    report = lines(out)
    assert report[0].startswith("CXR Enhance ") and report[-1].startswith("PASSED: all ")
    body = report[1:-1]
    assert all(LINE.match(line) for line in body), out.getvalue()
    names = [line.split(":")[0].split(None, 1)[1] for line in body]
    assert names == ["resources", "window", "Qt", "decoders", "samples", f"sample {LOWRES}",
                     "decode helper", "decode RLE Lossless", "torch", "models", "model tiny", "metrics"]

    monkeypatch.setattr(selftest, "SELFTEST_FILES", {"no-such-file.dcm": "Nothing, nobody"})
    out = io.StringIO()
    assert selftest.run_self_test(out) == 1
    assert lines(out)[-1].startswith("FAILED: 1 of ") and "decode Nothing" in lines(out)[-1]


def test_main_parses_flags_and_writes_the_report_file(tmp_path, monkeypatch, capsys):
    seen = {}

    def fake(stream, *, require_model, timeout_s):
        seen.update(require_model=require_model, timeout_s=timeout_s)
        stream.write("OK   fake: fine. (1 ms)\n")
        return 0

    monkeypatch.setattr(selftest, "run_self_test", fake)
    report = tmp_path / "report.txt"
    assert selftest.main(["--require-model", "--output", str(report), "--timeout", "5"]) == 0
    assert seen == {"require_model": True, "timeout_s": 5.0}
    assert report.read_text() == capsys.readouterr().out == "OK   fake: fine. (1 ms)\n"
