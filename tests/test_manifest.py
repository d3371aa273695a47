"""The napari manifest is valid and its commands import; core stays free of Qt and napari."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MANIFEST = REPO / "napari.yaml"


def test_manifest_validates_and_every_command_imports():
    npe2 = pytest.importorskip("npe2")
    manifest = npe2.PluginManifest.from_file(MANIFEST)
    manifest.validate_imports()  # raises when a python_name does not resolve
    for command in manifest.contributions.commands:
        module, attr = command.python_name.split(":")
        assert callable(getattr(importlib.import_module(module), attr)), command.id


def test_installed_manifest_is_the_repository_one():
    npe2 = pytest.importorskip("npe2")
    installed = npe2.PluginManifest.from_distribution("napari-sam")
    assert installed.name == npe2.PluginManifest.from_file(MANIFEST).name
    readers = installed.contributions.readers
    assert any("*.gpkg" in r.filename_patterns for r in readers)


def test_npe2_validate_command_line():
    exe = Path(sys.executable).with_name("npe2")
    if not exe.exists():
        pytest.skip("npe2 command line not installed")
    result = subprocess.run([str(exe), "validate", str(MANIFEST)], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


CHECK_IMPORTS = """
import importlib, pkgutil, sys
import sam_model
import napari_sam.core as core
for info in pkgutil.walk_packages(core.__path__, "napari_sam.core."):
    importlib.import_module(info.name)
for info in pkgutil.walk_packages(sam_model.__path__, "sam_model."):
    importlib.import_module(info.name)
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("qtpy", "napari", "PyQt5", "PyQt6",
                                                         "PySide2", "PySide6"))
print("BAD", bad)
"""


def test_core_and_sam_model_import_neither_qt_nor_napari():
    result = subprocess.run([sys.executable, "-c", CHECK_IMPORTS], capture_output=True,
                            text=True, timeout=600, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "BAD []" in result.stdout, result.stdout
