"""``napari-sam models list | download | verify``: output and exit statuses."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import socket

import pytest
import torch

from napari_sam.cli import main
from sam_model import build_sam_from_config, model_table, tiny_test_config, weights
from sam_model.model_table import ModelEntry


def tiny_network(architecture: str, img_size: int | None = None):
    """The builder of the test table's one model: the tiny random-weight test network."""
    return build_sam_from_config(tiny_test_config(img_size or 256))


@pytest.fixture
def ckpt(tmp_path):
    """A tiny model's state dict on disk, and a model table entry publishing it."""
    buf = io.BytesIO()
    torch.save(tiny_network("tiny").state_dict(), buf)
    data = buf.getvalue()
    src = tmp_path / "served" / "tiny_ckpt.pt"
    src.parent.mkdir()
    src.write_bytes(data)
    entry = ModelEntry(name="tiny", architecture="tiny", builder=f"{__name__}:tiny_network",
                       filename="tiny_ckpt.pt", urls=(src.as_uri(),), size=len(data),
                       sha256=hashlib.sha256(data).hexdigest())
    return src, entry


@pytest.fixture
def cache(tmp_path, monkeypatch):
    path = tmp_path / "cache"
    monkeypatch.setenv(weights.CACHE_ENV, str(path))
    return path


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("napari-sam: error: ")
    return lines[0]


def test_list_shows_every_model_and_what_is_cached(cache, capsys):
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["NAME", "FILE", "SIZE", "CACHED", "PATH"]
    assert out[-2] == "" and out[-1].startswith(f"default: {model_table.DEFAULT_MODEL} ")
    rows = {line.split()[0]: line.split() for line in out[1:-2]}
    assert set(rows) == set(model_table.MODELS)
    assert rows["vit_b"][1:4] == ["sam_vit_b_01ec64.pth", "375.0", "MB"]
    assert rows["vit_b"][4] == "no" and rows["vit_b"][5] == str(cache / "sam_vit_b_01ec64.pth")

    cache.mkdir()
    with open(cache / "mobile_sam.pt", "wb") as fh:  # sparse file of the published size
        fh.truncate(model_table.MODELS["vit_t"].size)
    (cache / "sam_vit_h_4b8939.pth.part").write_bytes(b"x")
    other = cache.parent / "other"
    assert main(["models", "list"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[1:-2]}
    assert rows["vit_t"][4] == "yes" and rows["vit_h"][4] == "partial"
    assert main(["models", "list", "--cache-dir", str(other)]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[1:-2]}
    assert rows["vit_t"][4] == "no" and rows["vit_t"][5] == str(other / "mobile_sam.pt")


def test_download_and_verify(ckpt, cache, monkeypatch, capsys):
    src, entry = ckpt
    monkeypatch.setattr(model_table, "MODELS", {"tiny": entry})
    assert main(["models", "download", "tiny", "--no-progress"]) == 0
    out = capsys.readouterr().out.strip()
    assert out == str(cache / "tiny_ckpt.pt")
    assert (cache / "tiny_ckpt.pt").read_bytes() == src.read_bytes()

    other = cache.parent / "elsewhere"
    assert main(["models", "download", "tiny", "--cache-dir", str(other), "--no-progress"]) == 0
    assert (other / "tiny_ckpt.pt").is_file()
    capsys.readouterr()

    assert main(["models", "verify", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "status: OK" in out and "matches: tiny" in out
    assert main(["models", "verify", str(src)]) == 0  # a path, recognised by its hash
    assert "matches: tiny" in capsys.readouterr().out

    (cache / "tiny_ckpt.pt").write_bytes(b"damaged" + src.read_bytes()[7:])
    assert main(["models", "verify", "tiny"]) == 2
    captured = capsys.readouterr()
    assert "status: FAILED" in captured.out
    assert "sha256 differs" in _one_line(captured.err)


def test_bad_name_and_missing_file_exit_2(cache, capsys):
    assert main(["models", "download", "vit_x"]) == 2
    assert "unknown model 'vit_x'" in _one_line(capsys.readouterr().err)
    assert main(["models", "verify", "vit_b"]) == 2
    assert "napari-sam models download vit_b" in _one_line(capsys.readouterr().err)
    assert main(["models", "verify", str(cache / "nothing.pth")]) == 2
    assert "neither a known model name" in _one_line(capsys.readouterr().err)
    with pytest.raises(SystemExit) as info:
        main(["models"])
    assert info.value.code == 2


def test_offline_download_exit_2(ckpt, cache, monkeypatch, capsys):
    _, entry = ckpt
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/tiny_ckpt.pt"
    sock.close()
    monkeypatch.setattr(model_table, "MODELS", {"tiny": dataclasses.replace(entry, urls=(url,))})
    assert main(["models", "download", "tiny", "--no-progress"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert url in line and str(cache / "tiny_ckpt.pt") in line
    assert not cache.exists() or not any(cache.iterdir())
