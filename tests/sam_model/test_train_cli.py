"""``napari-sam train`` and ``napari-sam evaluate`` end to end on a tiny labelled set."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from skimage import io as skio

from napari_sam.cli import main
from sam_model import DEFAULT_MODEL

pytestmark = pytest.mark.usefixtures("one_thread")


def _pair(seed: int, size: int = 96):
    rng = np.random.default_rng(seed)
    labels = np.zeros((size, size), np.uint16)
    image = rng.normal(60, 10, (size, size, 3))
    for i in range(1, 4):
        y, x = rng.integers(15, size - 15, 2)
        yy, xx = np.ogrid[:size, :size]
        disc = (yy - y) ** 2 + (xx - x) ** 2 < rng.integers(6, 12) ** 2
        labels[disc] = i
        image[disc] = rng.uniform(150, 230, 3)
    return np.clip(image, 0, 255).astype(np.uint8), labels


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for i in range(2):
        image, labels = _pair(i)
        skio.imsave(root / "images" / f"im{i}.png", image, check_contrast=False)
        skio.imsave(root / "labels" / f"im{i}.png", labels, check_contrast=False)
    return root


def test_train_then_evaluate_a_folder(folder, tmp_path, capsys):
    run = tmp_path / "run"
    rc = main(["train", str(folder), "--out", str(run), "--steps", "2", "--crop", "64",
               "--objects", "2", "--rounds", "2", "--crops-per-batch", "1", "--device", "cpu",
               "--quiet"])
    assert rc == 0
    assert (run / "model.pt").is_file() and (run / "last.pt").is_file()
    assert "finished at step 2/2" in capsys.readouterr().out
    report_path = tmp_path / "report.json"
    rc = main(["evaluate", str(folder), "--model", DEFAULT_MODEL, "--checkpoint",
               str(run / "model.pt"), "--device", "cpu", "--clicks", "2", "--json",
               str(report_path)])
    assert rc == 0
    report = json.loads(report_path.read_text())
    assert report["images"] == 2 and report["objects"] == 6
    assert 0 <= report["point_top"] <= report["point_best"] <= 1
    assert len(report["clicks_curve"]) == 2
    bins = report["by_extent"]  # every object in exactly one size bin
    assert sum(b["objects"] for b in bins.values()) == 6
    assert all(0 <= b["box"] <= 1 for b in bins.values())
    # an existing report is kept without --overwrite
    assert main(["evaluate", str(folder), "--device", "cpu", "--json", str(report_path)]) == 2


def test_train_encoder_options_reach_the_run(folder, tmp_path):
    run = tmp_path / "run"
    rc = main(["train", str(folder), "--out", str(run), "--steps", "1", "--crop", "64",
               "--objects", "1", "--rounds", "1", "--crops-per-batch", "1", "--device", "cpu",
               "--train-encoder", "--encoder-lr-scale", "0.5", "--loss-size", "32", "--quiet"])
    assert rc == 0
    state = torch.load(run / "last.pt", weights_only=True)
    config = state["config"]
    assert config["bn_eval"] and config["loss_size"] == 32 and config["encoder_lr_scale"] == 0.5
    lrs = sorted(g["lr"] for g in state["optimizer"]["param_groups"])
    assert len(lrs) == 2 and lrs[0] == pytest.approx(0.5 * lrs[1])
    assert main(["train", str(folder), "--out", str(tmp_path / "bad"), "--loss-size", "4",
                 "--device", "cpu", "--quiet"]) == 2


def test_evaluate_a_zarr_store(tmp_path, capsys):
    import zarr

    image, labels = _pair(5)
    store = tmp_path / "pairs.zarr"
    group = zarr.open_group(str(store), mode="w")
    group.create_array("image", data=image)
    group.create_array("labels", data=labels)
    assert main(["evaluate", str(store), "--device", "cpu", "--clicks", "1"]) == 0
    assert "3 objects in 1 images" in capsys.readouterr().out


def test_bad_inputs_exit_2(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["train", str(empty), "--out", str(tmp_path / "r"), "--steps", "1"]) == 2
    assert "no image/label pairs" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "missing")]) == 2
    assert main(["train", "--out", str(tmp_path / "r")]) == 2  # neither DATA nor --scenes
    assert not (tmp_path / "r").exists()


def test_fixed_size_encoders_train_on_whole_frames():
    """A ViT encoder (fixed position table) gets whole frames, and a training step runs."""
    import argparse

    from napari_sam.cli.train import _plan
    from sam_model import build_sam_from_config, tiny_test_config
    from sam_model.train.data import pair_batch, prepare_pairs
    from sam_model.train.loop import interactive_loss

    torch.manual_seed(0)
    model = build_sam_from_config(tiny_test_config(img_size=256)).train()
    args = argparse.Namespace(crop=[64, 128], crops_per_batch=2, objects=2, rounds=2, steps=1)
    plan = _plan(args, model)
    assert plan.crop_sizes == (256,) and plan.img_size == 256
    batch = pair_batch(prepare_pairs([_pair(1)], 256), 0, 0, plan)
    assert batch["image"].shape == (2, 256, 256, 3) and batch["offset"].tolist() == [0, 0]
    loss, _ = interactive_loss(model, batch, rounds=2, generator=torch.Generator(),
                               point_first=True, use_mask_input=True)
    loss.backward()
    assert model.image_encoder.pos_embed.grad is not None
