"""``benchmarks/gpu_check.py`` keeps working on a CPU (device cpu, a small mosaic)."""

from __future__ import annotations

import json

from benchmarks import gpu_check


def test_gpu_check_runs_on_cpu(tmp_path):
    out = tmp_path / "check.json"
    assert gpu_check.main(["--device", "cpu", "--size", "256", "--tiles", "1",
                           "--points-per-side", "8", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["device"] == "cpu" and report["within_tolerance"] is True
    row = report["models"]["sam_tiny"]
    emb = row["embedding"]
    assert set(emb) >= {"float32", "bfloat16"} and "float16" not in emb  # CPU autocast: bf16
    # bfloat16 really ran (an error above zero) and stayed within its stated tolerance
    assert 0.0 < emb["bfloat16"]["relative_l2"] <= gpu_check.TOLERANCE["bfloat16"]
    seg = row["segment"]
    assert seg["tiles"] == 1 and seg["decoder_calls"] >= 1 and seg["peak_rss_mb"] > 0
    assert seg["true_objects"] >= 1
