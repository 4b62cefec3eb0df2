"""Cheap static checks of build.spec (the PyInstaller bundle) and its Makefile targets.

The real proof is `make selftest-frozen` (the frozen app checking itself); these only catch the
edits that are known to break a frozen build before anyone spends minutes building it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "build.spec"


@pytest.fixture(scope="module")
def spec() -> str:
    return SPEC.read_text()


@pytest.fixture(scope="module")
def tree(spec: str) -> ast.Module:
    return ast.parse(spec)  # the spec is plain Python


def _calls(tree: ast.Module, name: str) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)
            and isinstance(n.func, ast.Name) and n.func.id == name]


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _excludes(tree: ast.Module) -> list[str]:
    """The module names build.spec excludes, as PyInstaller sees them: the `qt_unused` and
    `excludes` assignments evaluated (a name inside a comment is not excluded, so not listed)."""
    wanted = [n for n in tree.body if isinstance(n, ast.Assign)
              and any(isinstance(t, ast.Name) and t.id in ("qt_unused", "excludes") for t in n.targets)]
    assert len(wanted) == 2, "build.spec assigns qt_unused and excludes once each"
    namespace: dict = {}
    exec(compile(ast.Module(body=wanted, type_ignores=[]), str(SPEC), "exec"), namespace)
    names = namespace["excludes"]
    assert all(isinstance(n, str) for n in names)
    return names


def test_plugin_metadata_is_copied_for_entry_points(spec):
    # pylibjpeg finds openjpeg and rle through entry points: without the dists' metadata a
    # frozen app says "plugin is not installed".
    assert "copy_metadata" in spec
    for dist in ("pylibjpeg", "pylibjpeg-openjpeg", "pylibjpeg-rle", "pydicom"):
        assert f'"{dist}"' in spec, dist
    for module in ('"openjpeg"', '"rle"', '"gdcm"', '"_gdcm.gdcmswig"'):
        assert module in spec, module
    assert 'collect_submodules("pydicom.pixels")' in spec
    assert 'collect_submodules("engine")' in spec  # engine.sr imports lazily


def test_unused_qt_and_heavy_extras_are_excluded(tree):
    names = _excludes(tree)
    for module in ("QtWebEngineCore", "QtWebEngineWidgets", "QtQml", "QtQuick", "Qt3DCore",
                   "QtMultimedia"):
        assert f"PySide6.{module}" in names, module
    for module in ("tkinter", "matplotlib", "yaml", "training", "PyQt5"):
        assert module in names, module


def test_excludes_are_read_from_code_not_comments(tree):
    names = _excludes(tree)
    assert "skimage.data.tests" in names  # once hidden in a comment, so not excluded at all
    assert "PySide6.QtWebEngineCore" in names and "numpy.tests" in names
    assert "numpy.f2py" not in names  # named in a comment only: scipy needs it
    commented = ast.parse("excludes = [\n    'a',  # 'b' is in a comment\n]\nqt_unused = []\n")
    assert _excludes(commented) == ["a"]


def test_excludes_keep_what_the_app_imports(tree):
    names = _excludes(tree)
    for needed in ("torch", "torch.testing", "numpy", "pydicom", "PySide6.QtCore",
                   "PySide6.QtGui", "PySide6.QtWidgets", "skimage", "scipy", "safetensors",
                   "PIL", "engine", "viewer", "unittest"):
        assert needed not in names, needed
    # excluding a module excludes its submodules: nothing the app imports may sit below one
    for needed in ("torch.testing._internal.logging_tensor",  # imported by `import torch`
                   "torch.testing._internal.common_dtype", "PySide6.QtWidgets"):
        assert not any(needed == n or needed.startswith(n + ".") for n in names), needed


def test_one_folder_bundle_with_both_executables(tree):
    collects = _calls(tree, "COLLECT")
    assert len(collects) == 1, "one-folder mode: a single COLLECT"
    assert isinstance(_keyword(collects[0], "name"), ast.Name)  # BUNDLE_DIR
    exes = _calls(tree, "EXE")
    names = {ast.literal_eval(_keyword(e, "name")) for e in exes}
    assert names == {"cxr-viewer", "cxr-enhance"}
    for exe in exes:  # one-folder: binaries go to COLLECT, not into the executable
        assert ast.literal_eval(_keyword(exe, "exclude_binaries")) is True
    assert all(isinstance(arg, ast.Name) for arg in collects[0].args[:2])


def test_bundle_name_and_resources_destination(spec):
    assert 'BUNDLE_DIR = "cxr-enhance"' in spec
    # engine.resources looks in sys._MEIPASS/resources
    for dest in ('"resources/models"', '"resources/samples"', '"resources/icons"'):
        assert dest in spec, dest
    assert "SELFTEST_FILES" in spec and "resources/{SELFTEST_DIRNAME}" in spec


def test_entry_scripts_exist_and_freeze_support_comes_first():
    for name in ("cxr_viewer.py", "cxr_enhance.py"):
        text = (ROOT / "packaging" / name).read_text()
        body = text.split('if __name__ == "__main__":', 1)[1]
        # a spawned helper process re-runs the executable: freeze_support before anything else
        assert body.index("multiprocessing.freeze_support()") < body.index("from ")
    app = (ROOT / "viewer" / "app.py").read_text()
    assert "selftest.main(" in app and '"--self-test" in argv' in app  # the frozen self-test


def test_selftest_files_are_local_pydicom_test_data():
    from pydicom.data import get_testdata_file

    from viewer.selftest import SELFTEST_FILES

    for name in SELFTEST_FILES:
        path = get_testdata_file(name, download=False)
        assert path and Path(path).stat().st_size < 50_000, name


def test_makefile_targets():
    text = (ROOT / "Makefile").read_text()
    assert re.search(r"^package:.*\n\t.*pyinstaller --noconfirm build\.spec", text, re.M)
    assert re.search(r"^selftest-frozen:.*\n\tQT_QPA_PLATFORM=offscreen \$\(FROZEN\) --self-test "
                     r"--require-model$", text, re.M)  # a bundle that lost its models fails
    assert "make selftest-frozen" in (ROOT / ".ci" / "run").read_text()
    assert '".[package]"' in text
