"""Our SAM model against the reference packages: encoder and prompt timings.

Same random weights, same input, same process, alternating runs (so a busy
machine slows both alike); the minimum of the timed runs is reported.

* image encoder, one 1024x1024 input: vit_b (``segment_anything``) and vit_t
  (``mobile_sam``); targets: at least 1.5x (vit_b) and 1.2x (vit_t) faster;
* one single-point prompt on a cached vit_b embedding of a 1024x1024 image,
  full-resolution masks included (the predictors' ``predict``, three
  candidates, and one); target: at most 80 ms and at least 1.5x faster;
* for information, 64 points in one ``predict_torch`` call.

    python -m benchmarks.bench_model            # everything (a few minutes on 2 cores)
    python -m benchmarks.bench_model --quick    # fewer repetitions

The reference packages import torchvision/timm; the test suite's pure-torch
stand-ins (``tests/reference_shims.py``) are installed first. Results go to
``benchmarks/results/model.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import torch

from benchmarks.timing import alternate, point_prompt_comparison

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TARGETS = {"encoder_vit_b": 1.5, "encoder_vit_t": 1.2, "prompt_speedup": 1.5, "prompt_ms": 80.0}


def _setup_paths() -> None:
    for p in (REPO, REPO / "tests"):
        if str(p) not in sys.path:
            sys.path.insert(0, str(p))
    import reference_shims

    reference_shims.install()


def _models(name: str):
    """(ours, reference) with the same random weights (zero-initialised ones perturbed)."""
    import sam_model

    torch.manual_seed(0)
    ours = sam_model.build_sam(name, pretrained=False)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for key, value in ours.state_dict().items():
            if value.dtype.is_floating_point:
                if key.endswith("running_var"):
                    value.copy_(0.5 + torch.rand(value.shape, generator=gen))
                else:
                    value.add_(torch.randn(value.shape, generator=gen) * 0.02)
    if name == "vit_t":
        from mobile_sam.build_sam import build_sam_vit_t as build
    else:
        from segment_anything.build_sam import sam_model_registry

        build = sam_model_registry[name]
    ref = build()
    ref.load_state_dict(ours.state_dict())
    return ours.eval(), ref.eval()


@torch.no_grad()
def bench_encoder(name: str, reps: int) -> dict:
    ours, ref = _models(name)
    x = torch.randn(1, 3, 1024, 1024)
    diff = (ours.image_encoder(x) - ref.image_encoder(x)).abs().max().item()
    t = alternate({"ours": lambda: ours.image_encoder(x),
                    "reference": lambda: ref.image_encoder(x)}, reps)
    best = {k: min(v) for k, v in t.items()}
    return {"ours_s": best["ours"], "reference_s": best["reference"],
            "speedup": best["reference"] / best["ours"], "max_abs_diff": diff,
            "all_s": t, "target_speedup": TARGETS[f"encoder_{name}"]}


@torch.no_grad()
def bench_prompt(reps: int) -> dict:
    from segment_anything import SamPredictor as RefPredictor

    import sam_model

    ours, ref = _models("vit_b")
    size = (1024, 1024)
    features = torch.randn(1, 256, 64, 64)
    p_ours, p_ref = sam_model.SamPredictor(ours), RefPredictor(ref)
    p_ours.set_image_embedding(features, original_size=size)
    p_ref.features, p_ref.original_size, p_ref.input_size = features, size, size
    p_ref.is_image_set = True
    out = point_prompt_comparison(p_ours, p_ref, reps)
    # 64 points in one call (automatic mask generation decodes batches like this)
    pts = torch.rand(64, 1, 2) * 1024
    labels = torch.ones(64, 1, dtype=torch.long)
    t = alternate({
        "ours": lambda: p_ours.predict_torch(pts, labels, multimask_output=True),
        "reference": lambda: p_ref.predict_torch(pts, labels, multimask_output=True),
    }, max(1, reps // 10))
    out["batch64"] = {"ours_ms_per_point": min(t["ours"]) / 64 * 1e3,
                      "reference_ms_per_point": min(t["reference"]) / 64 * 1e3,
                      "speedup": min(t["reference"]) / min(t["ours"])}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--out", default=str(HERE / "results" / "model.json"))
    args = parser.parse_args(argv)
    _setup_paths()
    enc_reps, prompt_reps = (1, 10) if args.quick else (2, 30)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    report = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpus": os.cpu_count(), "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "loadavg_at_start": load},
        "encoder": {}, "prompt": None,
    }
    for name in ("vit_t", "vit_b"):
        print(f"encoder {name} ...", flush=True)
        report["encoder"][name] = bench_encoder(name, enc_reps)
    print("prompt ...", flush=True)
    report["prompt"] = bench_prompt(prompt_reps)
    report["machine"]["loadavg_at_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    enc, pr = report["encoder"], report["prompt"]
    ok = {
        "encoder_vit_b": enc["vit_b"]["speedup"] >= TARGETS["encoder_vit_b"],
        "encoder_vit_t": enc["vit_t"]["speedup"] >= TARGETS["encoder_vit_t"],
        "prompt_ms": pr["multimask"]["ours_ms"] <= TARGETS["prompt_ms"],
        "prompt_speedup": pr["multimask"]["speedup"] >= TARGETS["prompt_speedup"],
    }
    report["targets"] = {"values": TARGETS, "met": ok}
    rows = [
        ("encoder vit_b (1024^2)", f"{enc['vit_b']['ours_s']:.2f} s",
         f"{enc['vit_b']['reference_s']:.2f} s", enc["vit_b"]["speedup"], ">= 1.5x"),
        ("encoder vit_t (1024^2)", f"{enc['vit_t']['ours_s']:.2f} s",
         f"{enc['vit_t']['reference_s']:.2f} s", enc["vit_t"]["speedup"], ">= 1.2x"),
        ("1 point, 3 masks, full res", f"{pr['multimask']['ours_ms']:.0f} ms",
         f"{pr['multimask']['reference_ms']:.0f} ms", pr["multimask"]["speedup"],
         "<= 80 ms, >= 1.5x"),
        ("1 point, 1 mask, full res", f"{pr['single']['ours_ms']:.0f} ms",
         f"{pr['single']['reference_ms']:.0f} ms", pr["single"]["speedup"], ""),
        ("64 points, per point", f"{pr['batch64']['ours_ms_per_point']:.1f} ms",
         f"{pr['batch64']['reference_ms_per_point']:.1f} ms", pr["batch64"]["speedup"], ""),
    ]
    print(f"\n{'case':30} {'ours':>10} {'reference':>10} {'speedup':>8}  target")
    for case, a, b, s, target in rows:
        print(f"{case:30} {a:>10} {b:>10} {s:>7.2f}x  {target}")
    print(f"targets met: {ok}  (load average {load} at start)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=float))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
