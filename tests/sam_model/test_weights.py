"""The weights registry, cache and downloader, against a local HTTP server on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import io
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

import sam_model
from sam_model import model_table, weights
from sam_model.checkpoint import state_signature
from sam_model.model_table import ModelEntry


def _tiny_state_dict() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {
        "image_encoder.patch_embed.proj.weight": torch.randn(8, 3, 4, 4, generator=gen),
        "image_encoder.blocks.0.attn.qkv.weight": torch.randn(24, 8, generator=gen),
        "image_encoder.neck.0.weight": torch.randn(16, 8, 1, 1, generator=gen),
        "prompt_encoder.no_mask_embed.weight": torch.randn(1, 16, generator=gen),
        "mask_decoder.iou_token.weight": torch.randn(1, 16, generator=gen),
        "mask_decoder.filler": torch.randn(120, 256, generator=gen),  # ~120 kB in all
    }


@pytest.fixture(scope="module")
def ckpt_bytes() -> bytes:
    buf = io.BytesIO()
    torch.save(_tiny_state_dict(), buf)
    return buf.getvalue()


class _Server:
    """What the handler serves and what it saw. Paths: /<mode>/<file>.

    Modes: ``ok`` (honours Range), ``norange`` (ignores Range, always 200),
    ``corrupt`` (one byte flipped), ``cut`` (the first ``cuts`` responses stop
    half way, after promising the full Content-Length), ``missing`` (404).
    """

    def __init__(self, payload: bytes):
        self.payload = payload
        self.cuts = 0
        self.requests: list[tuple[str, str | None]] = []
        self.lock = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):
        state: _Server = self.server.state
        rng = self.headers.get("Range")
        with state.lock:
            state.requests.append((self.path, rng))
        mode = self.path.strip("/").split("/")[0]
        if mode == "missing":
            self.send_error(404, "Not Found")
            return
        body = state.payload
        if mode == "corrupt":
            middle = len(body) // 2
            body = body[:middle] + bytes([body[middle] ^ 0xFF]) + body[middle + 1:]
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", rng or "")
        if match and mode != "norange":
            start = int(match.group(1))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        chunk = body[start:]
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Content-Length", str(len(chunk)))
        self.end_headers()
        cut = False
        if mode == "cut":
            with state.lock:
                if state.cuts > 0:
                    state.cuts -= 1
                    cut = True
        # HTTP/1.0: the connection closes when the handler returns, so a cut
        # response ends early after its headers promised the full length.
        self.wfile.write(chunk[: len(chunk) // 2] if cut else chunk)
        self.wfile.flush()


@pytest.fixture
def server(ckpt_bytes):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.state = _Server(ckpt_bytes)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02},
                              daemon=True)
    thread.start()
    httpd.state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd.state
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


@pytest.fixture
def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now: connections are refused
    return port


def _registry(ckpt_bytes: bytes, url: str, **changes) -> dict[str, ModelEntry]:
    entry = ModelEntry(
        name="tiny", builder="", filename="tiny_ckpt.pt", architecture="tiny", urls=(url,),
        size=len(ckpt_bytes), sha256=hashlib.sha256(ckpt_bytes).hexdigest())
    return {"tiny": dataclasses.replace(entry, **changes)}


# ----------------------------------------------------------------------------- registry


def test_registry_lists_the_published_checkpoints():
    reg = model_table.MODELS
    assert {"vit_b", "vit_l", "vit_h", "vit_t", "sam_tiny"} <= set(reg)
    files = {name: reg[name].filename for name in ("vit_b", "vit_l", "vit_h", "vit_t")}
    assert files == {"vit_b": "sam_vit_b_01ec64.pth", "vit_l": "sam_vit_l_0b3195.pth",
                     "vit_h": "sam_vit_h_4b8939.pth", "vit_t": "mobile_sam.pt"}
    for name in files:
        entry = reg[name]
        assert entry.urls and all(u.startswith("https://") for u in entry.urls)
        assert entry.urls[0].endswith(entry.filename)
        assert isinstance(entry.size, int) and entry.size > 10_000_000
        assert re.fullmatch(r"[0-9a-f]{64}", entry.sha256)
        assert entry.source  # where the figures come from
    assert reg["vit_b"].size < reg["vit_l"].size < reg["vit_h"].size
    tiny = reg["sam_tiny"]
    assert tiny.packaged is not None and tiny.packaged.name == "sam_tiny.pt"
    assert tiny.packaged.parent.name == "weights" and tiny.packaged.parent.parent.name == "sam_model"
    with pytest.raises(TypeError):
        reg["x"] = tiny  # read-only
    with pytest.raises(weights.WeightsError, match="unknown model 'vit_x'.*vit_b"):
        weights.get_entry("vit_x")


def test_cache_dir_env_override_and_cached_path(tmp_path, monkeypatch):
    monkeypatch.setenv(weights.CACHE_ENV, str(tmp_path / "cache"))
    assert weights.default_cache_dir() == tmp_path / "cache"
    assert weights.target_path("vit_b") == tmp_path / "cache" / "sam_vit_b_01ec64.pth"
    assert weights.cached_path("vit_b") is None
    reg = {"tiny": ModelEntry(name="tiny", builder="", filename="t.pt", architecture="x", size=4)}
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "t.pt").write_bytes(b"abc")  # wrong size: not usable
    assert weights.cached_path("tiny", registry=reg) is None
    (tmp_path / "cache" / "t.pt").write_bytes(b"abcd")
    assert weights.cached_path("tiny", registry=reg) == tmp_path / "cache" / "t.pt"
    other = tmp_path / "elsewhere"
    assert weights.cached_path("tiny", other, registry=reg) is None
    monkeypatch.delenv(weights.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if weights.sys.platform.startswith("linux"):
        assert weights.default_cache_dir() == tmp_path / "xdg" / "napari-sam"


def test_packaged_weights_are_never_downloaded(tmp_path):
    packaged = tmp_path / "pkg" / "sam_tiny.pt"
    reg = {"sam_tiny": ModelEntry(name="sam_tiny", builder="", filename="sam_tiny.pt",
                                  architecture="sam_tiny", packaged=packaged)}
    with pytest.raises(weights.WeightsError, match="packaged weights .* missing"):
        weights.download("sam_tiny", tmp_path / "cache", registry=reg)
    packaged.parent.mkdir()
    packaged.write_bytes(b"weights")
    assert weights.download("sam_tiny", tmp_path / "cache", registry=reg) == packaged
    assert weights.cached_path("sam_tiny", registry=reg) == packaged
    assert not (tmp_path / "cache").exists()


# ----------------------------------------------------------------------------- download


def test_download_verifies_and_caches(server, ckpt_bytes, tmp_path):
    reg = _registry(ckpt_bytes, f"{server.base}/ok/tiny_ckpt.pt")
    path = weights.download("tiny", tmp_path, registry=reg, progress=False)
    assert path == tmp_path / "tiny_ckpt.pt"
    assert path.read_bytes() == ckpt_bytes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny_ckpt.pt"]  # no .part left
    assert weights.cached_path("tiny", tmp_path, registry=reg) == path
    n = len(server.requests)
    assert weights.download("tiny", tmp_path, registry=reg, progress=False) == path
    assert len(server.requests) == n  # present: no new request
    weights.download("tiny", tmp_path, registry=reg, progress=False, force=True)
    assert len(server.requests) == n + 1 and path.read_bytes() == ckpt_bytes


def test_progress_bar_goes_to_stderr(server, ckpt_bytes, tmp_path, capsys):
    reg = _registry(ckpt_bytes, f"{server.base}/ok/tiny_ckpt.pt")
    weights.download("tiny", tmp_path, registry=reg, progress=True)
    out, err = capsys.readouterr()
    assert out == ""
    assert "tiny_ckpt.pt" in err and "100%" in err


def test_corrupted_body_leaves_nothing(server, ckpt_bytes, tmp_path):
    reg = _registry(ckpt_bytes, f"{server.base}/corrupt/tiny_ckpt.pt")
    with pytest.raises(weights.ChecksumError, match="sha256 [0-9a-f]{64} instead of") as info:
        weights.download("tiny", tmp_path, registry=reg, progress=False)
    assert "corrupt/tiny_ckpt.pt" in str(info.value)
    assert list(tmp_path.iterdir()) == []  # neither the file nor its .part


def test_wrong_size_leaves_nothing(server, ckpt_bytes, tmp_path):
    reg = _registry(ckpt_bytes, f"{server.base}/ok/tiny_ckpt.pt", size=len(ckpt_bytes) + 10)
    with pytest.raises(weights.ChecksumError, match=f"{len(ckpt_bytes)} bytes instead of"):
        weights.download("tiny", tmp_path, registry=reg, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_transfer_resumes_on_the_next_call(server, ckpt_bytes, tmp_path):
    server.cuts = 1
    reg = _registry(ckpt_bytes, f"{server.base}/cut/tiny_ckpt.pt")
    with pytest.raises(weights.DownloadError, match="interrupted after .*run the same command"):
        weights.download("tiny", tmp_path, registry=reg, progress=False, retries=0)
    part = tmp_path / "tiny_ckpt.pt.part"
    assert not (tmp_path / "tiny_ckpt.pt").exists()
    have = part.stat().st_size
    assert 0 < have < len(ckpt_bytes)
    assert part.read_bytes() == ckpt_bytes[:have]

    path = weights.download("tiny", tmp_path, registry=reg, progress=False, retries=0)
    assert path.read_bytes() == ckpt_bytes
    assert not part.exists()
    assert server.requests[0][1] is None
    assert server.requests[-1] == ("/cut/tiny_ckpt.pt", f"bytes={have}-")


def test_interrupted_transfer_resumes_automatically(server, ckpt_bytes, tmp_path):
    server.cuts = 2
    reg = _registry(ckpt_bytes, f"{server.base}/cut/tiny_ckpt.pt")
    path = weights.download("tiny", tmp_path, registry=reg, progress=False, retries=2)
    assert path.read_bytes() == ckpt_bytes
    ranges = [r for _, r in server.requests]
    assert len(ranges) == 3 and ranges[0] is None
    assert all(r and r.startswith("bytes=") for r in ranges[1:])


def test_server_ignoring_range_restarts_from_zero(server, ckpt_bytes, tmp_path):
    (tmp_path / "tiny_ckpt.pt.part").write_bytes(b"stale bytes from another attempt")
    reg = _registry(ckpt_bytes, f"{server.base}/norange/tiny_ckpt.pt")
    path = weights.download("tiny", tmp_path, registry=reg, progress=False)
    assert server.requests[0][1] == "bytes=32-"  # it asked to resume, got a 200
    assert path.read_bytes() == ckpt_bytes


def test_complete_part_is_verified_without_refetching(server, ckpt_bytes, tmp_path):
    (tmp_path / "tiny_ckpt.pt.part").write_bytes(ckpt_bytes)
    reg = _registry(ckpt_bytes, f"{server.base}/ok/tiny_ckpt.pt")
    assert weights.download("tiny", tmp_path, registry=reg, progress=False).read_bytes() == ckpt_bytes
    assert server.requests == []


def test_offline_error_names_url_and_manual_placement(ckpt_bytes, tmp_path, closed_port):
    url = f"http://127.0.0.1:{closed_port}/ok/tiny_ckpt.pt"
    reg = _registry(ckpt_bytes, url)
    with pytest.raises(weights.DownloadError) as info:
        weights.download("tiny", tmp_path / "cache", registry=reg, progress=False, timeout=5)
    message = str(info.value)
    assert url in message and "refused" in message.lower()
    assert str(tmp_path / "cache" / "tiny_ckpt.pt") in message  # where to put it by hand
    assert "napari-sam models verify tiny" in message
    assert not list((tmp_path / "cache").glob("*"))


def test_http_error_and_mirror_fallback(server, ckpt_bytes, tmp_path, closed_port):
    reg = _registry(ckpt_bytes, f"{server.base}/missing/tiny_ckpt.pt")
    with pytest.raises(weights.DownloadError, match="HTTP 404"):
        weights.download("tiny", tmp_path, registry=reg, progress=False)
    mirrors = [f"http://127.0.0.1:{closed_port}/x", f"{server.base}/ok/tiny_ckpt.pt"]
    path = weights.download("tiny", tmp_path, registry=reg, progress=False, urls=mirrors)
    assert path.read_bytes() == ckpt_bytes
    path.unlink()
    path = weights.download("tiny", tmp_path, registry=reg, progress=False,
                            base_url=f"{server.base}/ok/")
    assert path.read_bytes() == ckpt_bytes


def test_unknown_hash_downloads_with_a_warning(server, ckpt_bytes, tmp_path):
    reg = _registry(ckpt_bytes, f"{server.base}/ok/tiny_ckpt.pt", sha256=None)
    with pytest.warns(weights.UnverifiedWeightsWarning, match="without a hash check"):
        path = weights.download("tiny", tmp_path, registry=reg, progress=False)
    assert path.read_bytes() == ckpt_bytes


# ----------------------------------------------------------------------------- verify


@pytest.fixture(scope="module")
def vit_t_layout(tmp_path_factory) -> Path:
    """A file with exactly MobileSAM's keys and shapes (bool zeros: ~10 MB, no real weights)."""
    with torch.device("meta"):
        model = sam_model.build_sam("vit_t", pretrained=False)
    state = {k: torch.zeros(shape, dtype=torch.bool) for k, shape in state_signature(model).items()}
    path = tmp_path_factory.mktemp("layout") / "mobile_like.pt"
    torch.save(state, path)
    return path


def test_verify_by_name_and_by_path(tmp_path, ckpt_bytes):
    reg = _registry(ckpt_bytes, "http://unused.invalid/tiny_ckpt.pt")
    with pytest.raises(weights.WeightsError, match="models download tiny"):
        weights.verify("tiny", tmp_path, registry=reg)
    cached = tmp_path / "tiny_ckpt.pt"
    cached.write_bytes(ckpt_bytes)
    report = weights.verify("tiny", tmp_path, registry=reg)
    assert report.ok and report.match is reg["tiny"] and report.expected is reg["tiny"]
    assert report.sha256 == hashlib.sha256(ckpt_bytes).hexdigest()
    assert report.layout == "SAM-like, fits no known model (6 tensors)"
    assert report.lines()[-1] == "status: OK"

    renamed = tmp_path / "some_name.bin"  # recognised by content, whatever its name
    renamed.write_bytes(ckpt_bytes)
    report = weights.verify(renamed, registry=reg, load=False)
    assert report.ok and report.match is reg["tiny"] and report.expected is None

    middle = len(ckpt_bytes) // 2
    damaged = ckpt_bytes[:middle] + bytes([ckpt_bytes[middle] ^ 0xFF]) + ckpt_bytes[middle + 1:]
    cached.write_bytes(damaged)  # a damaged copy in the cache
    report = weights.verify("tiny", tmp_path, registry=reg, load=False)
    assert not report.ok and report.match is None
    assert any("sha256 differs" in p for p in report.problems)
    assert report.lines()[-1] == "status: FAILED"


def test_verify_names_the_layout_of_a_file(vit_t_layout, tmp_path):
    report = weights.verify(vit_t_layout)
    assert report.ok and report.match is None and report.architecture == "vit_t"
    assert report.layout == "vit_t (439 tensors)"
    assert "matches: no published checkpoint (unknown file)" in report.lines()

    reg = {"vit_b": ModelEntry(name="vit_b", builder="", filename=vit_t_layout.name,
                               architecture="vit_b")}
    report = weights.verify("vit_b", vit_t_layout.parent, registry=reg)  # wrong file, right name
    assert not report.ok
    assert report.problems == ("keys and shapes are those of vit_t, not vit_b",)
    assert any("no published sha256" in line for line in report.lines())


def test_verify_unreadable_and_foreign_files(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"this is not a checkpoint" * 10)
    report = weights.verify(junk)
    assert not report.ok and report.layout == "unreadable"
    assert "cannot read checkpoint" in report.problems[0]

    pickled = tmp_path / "objects.pth"  # arbitrary Python objects: never unpickled
    torch.save({"image_encoder.x": datetime.date(2023, 4, 5)}, pickled)
    report = weights.verify(pickled)
    assert not report.ok and report.layout == "unreadable"

    other = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(2)}, other)
    report = weights.verify(other)
    assert not report.ok and report.problems[0].startswith("not a SAM state dict")

    with pytest.raises(weights.WeightsError, match="neither a known model name"):
        weights.verify(tmp_path / "absent.pth")


def test_module_stays_light():
    source = Path(weights.__file__).read_text()
    assert "\nimport torch" not in source and "\nimport napari" not in source
