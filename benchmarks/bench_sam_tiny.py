"""sam_tiny against MobileSAM (vit_t) on this CPU: encoder, decoder, weights size.

Same process, same input, alternating runs (a busy machine slows both alike),
the minimum of the timed runs is reported, ``torch.set_num_threads(2)``.

* image encoder, one 1024x1024 input: sam_tiny's conv encoder against
  MobileSAM's TinyViT (our implementation, and the reference ``mobile_sam``
  package when it is installed); target: sam_tiny at least 4x faster than
  the reference;
* one single-point prompt through prompt encoder + mask decoder on a cached
  embedding (low-res logits; 128 channels against 256), and 64 points in one
  call;
* the size of the shipped weights file (target: at most 16 MB).

    python -m benchmarks.bench_sam_tiny [--quick] [--model sam_lite0 --out FILE]

Results go to ``benchmarks/results/bench_sam_tiny.json`` (or ``--out``).
``--model`` measures another embedded model in sam_tiny's place.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TARGET_SPEEDUP = 4.0
TARGET_MB = 16.0


def _time(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _reference_vit_t():
    """The reference MobileSAM encoder with random weights, or None when not installed."""
    for p in (REPO, REPO / "tests"):
        if str(p) not in sys.path:
            sys.path.insert(0, str(p))
    try:
        import reference_shims

        reference_shims.install()
        from mobile_sam import sam_model_registry
    except Exception:  # the reference package is a test-only dependency
        return None
    return sam_model_registry["vit_t"](checkpoint=None).eval()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", default="sam_tiny", help="an embedded model (shipped weights)")
    parser.add_argument("--out", default=str(HERE / "results" / "bench_sam_tiny.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    repeats = 3 if args.quick else 6

    import sam_model

    tiny = sam_model.build_sam(args.model)
    ours_t = sam_model.build_sam("vit_t", pretrained=False)
    ref_t = _reference_vit_t()
    x = torch.randn(1, 3, 1024, 1024)
    encoders = {args.model: tiny.image_encoder, "vit_t (ours)": ours_t.image_encoder}
    if ref_t is not None:
        encoders["vit_t (reference mobile_sam)"] = ref_t.image_encoder
    enc_s: dict[str, float] = {name: float("inf") for name in encoders}
    with torch.inference_mode():
        for enc in encoders.values():
            enc(x)  # warm-up
        for _ in range(repeats):  # alternate so that load hits every model alike
            for name, enc in encoders.items():
                enc_s[name] = min(enc_s[name], _time(lambda e=enc: e(x), 1))

    dec_ms: dict[str, dict[str, float]] = {}
    with torch.inference_mode():
        for name, model in ((args.model, tiny), ("vit_t", ours_t)):
            emb = model.image_encoder(x)
            pe = model.prompt_encoder.get_dense_pe()

            def decode(n, model=model, emb=emb, pe=pe):
                pts = torch.rand(n, 1, 2) * 1024
                sparse, dense = model.prompt_encoder((pts, torch.ones(n, 1)), None, None)
                return model.mask_decoder(emb, pe, sparse, dense, True)

            decode(1)
            dec_ms[name] = {
                "one_point_ms": round(1000 * _time(lambda d=decode: d(1), repeats * 3), 1),
                "64_points_ms_per_point": round(1000 * _time(lambda d=decode: d(64), repeats) / 64,
                                                2),
            }

    reference = enc_s.get("vit_t (reference mobile_sam)", enc_s["vit_t (ours)"])
    speedup = reference / enc_s[args.model]
    size_mb = sam_model.MODELS[args.model].packaged.stat().st_size / 1e6
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
                   f"{args.threads} threads, torch {torch.__version__}",
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "encoder_s_1024": {k: round(v, 3) for k, v in enc_s.items()},
        "encoder_speedup_vs_mobilesam": round(speedup, 2),
        "decoder": dec_ms,
        "params_m": {k: round(sum(p.numel() for p in m.parameters()) / 1e6, 3)
                     for k, m in ((args.model, tiny), ("vit_t", ours_t))},
        "weights_mb": round(size_mb, 2),
        "targets": {"encoder_speedup": TARGET_SPEEDUP, "weights_mb": TARGET_MB},
        "pass": bool(speedup >= TARGET_SPEEDUP and size_mb <= TARGET_MB),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
