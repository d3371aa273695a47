"""Checkpoint files: strict loading, safe reading, clear errors."""

from __future__ import annotations

import pickle

import pytest
import torch

import sam_model
from sam_model import CheckpointError, build_sam_from_config, load_checkpoint, tiny_test_config
from sam_model.checkpoint import check_state_dict, read_state_dict


def _fresh():
    return build_sam_from_config(tiny_test_config())


def test_round_trip_is_exact(tiny_sam, tmp_path):
    path = tmp_path / "tiny.pth"
    torch.save(tiny_sam.state_dict(), path)
    model = load_checkpoint(_fresh(), path)
    for (k, a), (k2, b) in zip(tiny_sam.state_dict().items(), model.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    # wrapped under "model" (training checkpoints) is accepted too
    torch.save({"model": tiny_sam.state_dict()}, tmp_path / "wrapped.pth")
    assert set(read_state_dict(tmp_path / "wrapped.pth")) == set(tiny_sam.state_dict())


def test_missing_unexpected_and_shapes_are_listed(tiny_sam, tmp_path):
    state = tiny_sam.state_dict()
    state.pop("mask_decoder.iou_token.weight")
    state["extra.weight"] = torch.zeros(1)
    state["prompt_encoder.no_mask_embed.weight"] = torch.zeros(1, 7)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(_fresh(), path, model_name="tiny")
    msg = str(info.value)
    assert str(path) in msg and "'tiny'" in msg
    assert "1 missing keys (e.g. mask_decoder.iou_token.weight)" in msg
    assert "1 unexpected keys (e.g. extra.weight)" in msg
    assert "prompt_encoder.no_mask_embed.weight: file (1, 7) vs model (1, 32)" in msg


def test_other_official_model_is_named():
    with torch.device("meta"):
        vit_l = build_sam_from_config(sam_model.configs.official_config("vit_l"))
    with pytest.raises(CheckpointError, match="this is a 'vit_l' checkpoint, but model 'vit_b'"):
        check_state_dict(_fresh(), vit_l.state_dict(), source="x.pth", model_name="vit_b")


def test_unreadable_files(tmp_path, tiny_sam):
    with pytest.raises(CheckpointError, match="not found"):
        read_state_dict(tmp_path / "absent.pth")
    good = tmp_path / "good.pth"
    torch.save(tiny_sam.state_dict(), good)
    damaged = tmp_path / "damaged.pth"
    damaged.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        read_state_dict(damaged)
    text = tmp_path / "text.pth"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        read_state_dict(text)
    tensor = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), tensor)
    with pytest.raises(CheckpointError, match="not a state dict"):
        read_state_dict(tensor)


class _Payload:
    def __reduce__(self):
        return (print, ("code ran while loading",))


def test_pickled_code_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as fh:
        pickle.dump({"a": _Payload()}, fh)
    with pytest.raises(CheckpointError):
        read_state_dict(path)
    assert "code ran" not in capsys.readouterr().out


def test_build_sam_with_checkpoint_and_cache(tmp_path, monkeypatch, tiny_sam):
    monkeypatch.setenv("NAPARI_SAM_CACHE", str(tmp_path / "cache"))
    with pytest.raises(CheckpointError, match="napari-sam models download vit_b"):
        sam_model.build_sam("vit_b")
    # a wrong file for vit_t: its keys are listed, nothing half-loaded is returned
    path = tmp_path / "tiny.pth"
    torch.save(tiny_sam.state_dict(), path)
    with pytest.raises(CheckpointError, match="does not fit model 'vit_t'"):
        sam_model.build_sam("vit_t", path)


def test_build_sam_options(tmp_path):
    m = sam_model.build_sam("vit_t", pretrained=False, dtype=torch.bfloat16, device="cpu")
    assert m.encoder_autocast == torch.bfloat16 and not m.training
    assert all(p.dtype == torch.float32 for p in m.parameters())
    with pytest.raises(ValueError, match="dtype"):
        sam_model.build_sam("vit_t", pretrained=False, dtype=torch.int8)
