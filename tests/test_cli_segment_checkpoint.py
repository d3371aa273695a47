"""``napari-sam segment --checkpoint FILE`` alone: the model is recognised from the file."""

from __future__ import annotations

import pytest

from napari_sam.cli import main
from napari_sam.core.models import load_model
from napari_sam.errors import InputError
from sam_model import MODELS

SHIPPED = MODELS["sam_tiny"].packaged


def test_shipped_sam_tiny_file_alone_is_recognised():
    model = load_model(None, SHIPPED, device="cpu")
    assert model.model_name == "sam_tiny"


def test_unknown_layout_names_the_file(tmp_path):
    import torch

    path = tmp_path / "odd.pt"
    torch.save({"image_encoder.w": torch.zeros(3)}, path)
    with pytest.raises(InputError, match="odd.pt: cannot tell which model"):
        load_model(None, path, device="cpu")


def test_segment_with_the_shipped_checkpoint(tmp_path, shared_data, capsys):
    out = tmp_path / "out"
    rc = main(["segment", str(shared_data / "rgb-byte-tenth.tif"), "--out", str(out),
               "--checkpoint", str(SHIPPED), "--device", "cpu", "--points-per-side", "2",
               "--quiet"])
    assert rc == 0, capsys.readouterr().err
    assert (out / "rgb-byte-tenth" / "labels.tif").is_file()
