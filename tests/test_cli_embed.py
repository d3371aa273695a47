"""``napari-sam embed``: exit statuses, resume, refusal, no partial store."""

from __future__ import annotations

import pytest
import torch

from napari_sam.cli import build_parser, main
from napari_sam.core.tiling.store import EmbeddingStore

sam_model = pytest.importorskip("sam_model")


@pytest.fixture
def cli(cli_tiny_model):
    """Run the CLI in this process with the tiny model instead of sam_tiny."""
    return main


def stderr_lines(capfd):
    return [line for line in capfd.readouterr().err.splitlines() if line.strip()]


def test_embed_resume_and_refuse(cli, tiny_model, shared_data, tmp_path, capfd):
    src = shared_data / "rgb-byte-tenth.tif"
    out = tmp_path / "s.zarr"
    assert cli(["embed", str(src), "--out", str(out), "--overlap", "16"]) == 0
    captured = capfd.readouterr()
    assert "1 tiles (1 embedded, 0 empty)" in captured.out
    store = EmbeddingStore.open(out)
    assert store.complete and store.settings.model_name == "tiny-test"
    assert store.settings.georeference["crs"] is not None

    calls = []
    hook = tiny_model.image_encoder.register_forward_hook(lambda *a: calls.append(1))
    try:
        assert cli(["embed", str(src), "--out", str(out), "--overlap", "16", "--quiet"]) == 0
    finally:
        hook.remove()
    assert calls == [], "a complete store is reused without encoding"
    capfd.readouterr()

    assert cli(["embed", str(src), "--out", str(out), "--overlap", "8"]) == 2
    err = stderr_lines(capfd)
    assert len(err) == 1 and "s.zarr" in err[0] and "overlap 16 (now 8)" in err[0]
    assert "--overwrite" in err[0]

    assert cli(["embed", str(src), "--out", str(out), "--overlap", "8", "--overwrite",
                "--quiet"]) == 0
    assert EmbeddingStore.open(out).grid.overlap == 8


def test_corrupt_input_exit_2_and_no_store(cli, shared_data, tmp_path, capfd):
    out = tmp_path / "c.zarr"
    assert cli(["embed", str(shared_data / "corrupt.tif"), "--out", str(out)]) == 2
    err = stderr_lines(capfd)
    assert len(err) == 1 and "corrupt.tif" in err[0] and "damaged" in err[0]
    assert "Traceback" not in err[0]
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args,needle", [
    (["missing.tif"], "no such file"),
    (["{data}/shade.tif", "--bands", "2"], "bands [2] not in 1..1"),
    (["{data}/shade.tif", "--tile", "600", "--scale", "2"], "--scale 3"),
])
def test_bad_input_exit_2(cli, shared_data, tmp_path, capfd, args, needle):
    args = [a.format(data=shared_data) for a in args]
    out = tmp_path / "x.zarr"
    assert cli(["embed", *args, "--out", str(out)]) == 2
    err = stderr_lines(capfd)
    assert len(err) == 1 and needle in err[0]
    assert not out.exists()


def test_options_are_registered():
    parser = build_parser()
    args = parser.parse_args(["embed", "in.tif", "--out", "s.zarr", "--model", "vit_b",
                              "--checkpoint", "w.pth", "--device", "cpu", "--batch-size", "2",
                              "--tile", "512", "--overlap", "64", "--bands", "3,2,1",
                              "--scale", "2"])
    assert (args.model, args.checkpoint, args.device, args.batch_size) == ("vit_b", "w.pth",
                                                                           "cpu", 2)
    assert (args.tile, args.overlap, args.bands, args.scale) == (512, 64, [3, 2, 1], 2)
    with pytest.raises(SystemExit):
        parser.parse_args(["embed", "in.tif", "--out", "s.zarr", "--bands", "0,1"])


def test_model_loading_errors_are_input_errors(tmp_path, tiny_model):
    from argparse import Namespace

    from napari_sam.cli.common import load_model_from_args
    from napari_sam.errors import InputError

    with pytest.raises(InputError, match="unknown model"):
        load_model_from_args(Namespace(model="vit_zz", checkpoint=None, device="cpu"))
    ckpt = tmp_path / "tiny.pth"
    torch.save(tiny_model.state_dict(), ckpt)
    with pytest.raises(InputError, match="cannot tell which model"):
        load_model_from_args(Namespace(model=None, checkpoint=str(ckpt), device="cpu"))
    with pytest.raises(InputError, match="tiny.pth"):
        load_model_from_args(Namespace(model="vit_t", checkpoint=str(ckpt), device="cpu"))
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(InputError, match="junk.pth"):
        load_model_from_args(Namespace(model=None, checkpoint=str(tmp_path / "junk.pth"),
                                       device="cpu"))
