"""Our SAM 2.1 image path against the reference ``sam2`` on the same random weights.

Same weights (the reference's initialisation, perturbed so zero-initialised
parameters matter, loaded strictly into ours), same input, same process,
alternating runs (a busy machine slows both alike); minimum of the timed runs
for the encoder, median for prompts.

* image encoder, one 1024x1024 input, hiera_tiny and hiera_base_plus: what a
  ``set_image`` computes after the resize (trunk, neck, high-resolution
  projections, ``no_mem_embed``); target: at least 1.3x faster;
* one single-point prompt on a cached hiera_tiny embedding of a 1024x1024
  image (the predictors' ``predict``, full-resolution masks, three candidates
  and one); target: at least 1.5x faster.

    python -m benchmarks.bench_sam2            # everything (minutes on 2 cores)
    python -m benchmarks.bench_sam2 --quick    # fewer repetitions

The reference imports torchvision; the test suite's pure-torch stand-ins
(``tests/reference_shims.py``) are installed first. Results go to
``benchmarks/results/sam2.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from pathlib import Path

import torch

from benchmarks.timing import alternate, point_prompt_comparison

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TARGETS = {"encoder": 1.3, "prompt": 1.5}
YAML = {"sam2.1_hiera_tiny": "sam2.1_hiera_t.yaml", "sam2.1_hiera_base_plus": "sam2.1_hiera_b+.yaml"}


def load_average() -> tuple[float, float, float] | None:
    """The machine's load averages (None where the system has none)."""
    return os.getloadavg() if hasattr(os, "getloadavg") else None


def machine(load_at_start) -> dict:
    """What a SAM 2 benchmark report says of the machine; the load now is the one at the end."""
    return {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "loadavg_at_start": load_at_start,
            "loadavg_at_end": load_average()}


def write_report(path, report: dict) -> None:
    """Write ``report`` as JSON to ``path`` (folders made as needed) and say where."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=float))
    print(f"wrote {out}")


def setup_paths() -> None:
    for p in (REPO, REPO / "tests"):
        if str(p) not in sys.path:
            sys.path.insert(0, str(p))
    import reference_shims

    reference_shims.install()


def perturbed_models(name: str, *, extra_overrides: tuple[str, ...] = (), img_size=None,
                     adjust=None):
    """(ours, reference) with the same perturbed random weights.

    ``extra_overrides``: more hydra overrides of the reference's config (e.g. the
    video predictor as its target); ``img_size``: both models' input size;
    ``adjust(ref)``: a change to the reference's weights, under no_grad, made
    after the perturbation and before ours loads them.
    """
    import sam2  # noqa: F401  (hydra's config path)
    from hydra import compose
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    import sam_model

    overrides = [
        "++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
        "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
        "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
        *extra_overrides,
    ]
    if img_size is not None:
        overrides.append(f"++model.image_size={img_size}")
    cfg = compose(config_name=f"configs/sam2.1/{YAML[name]}", overrides=overrides)
    OmegaConf.resolve(cfg)
    torch.manual_seed(0)
    ref = instantiate(cfg.model, _recursive_=True).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for value in ref.state_dict().values():
            if value.dtype.is_floating_point:
                value.add_(torch.randn(value.shape, generator=gen) * 0.02)
        if adjust is not None:
            adjust(ref)
    kwargs = {} if img_size is None else {"img_size": img_size}
    ours = sam_model.build_sam(name, pretrained=False, **kwargs)
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ours.eval(), ref


def _reference_encode(ref, x):
    """What the reference image predictor computes from the resized, normalised input."""
    out = ref.forward_image(x)
    _, feats, _, _ = ref._prepare_backbone_features(out)
    feats[-1] = feats[-1] + ref.no_mem_embed
    sizes = [(256, 256), (128, 128), (64, 64)]
    return [f.permute(1, 2, 0).view(1, -1, *s) for f, s in zip(feats, sizes)]


@torch.no_grad()
def bench_encoder(name: str, reps: int) -> dict:
    ours, ref = perturbed_models(name)
    x = torch.randn(1, 3, 1024, 1024)
    emb, high = ours.encode(x)
    theirs = _reference_encode(ref, x)
    diff = max((a - b).abs().max().item() for a, b in zip([*high, emb], theirs))
    t = alternate({"ours": lambda: ours.encode(x), "reference": lambda: _reference_encode(ref, x)},
                   reps)
    best = {k: min(v) for k, v in t.items()}
    # each round runs both back to back: the ratio within a round is less sensitive to
    # the machine's load changing than the ratio of the minima
    paired = statistics.median(r / o for o, r in zip(t["ours"], t["reference"]))
    return {"ours_s": best["ours"], "reference_s": best["reference"],
            "speedup": best["reference"] / best["ours"], "paired_speedup_median": paired,
            "max_abs_diff": diff, "all_s": t, "target_speedup": TARGETS["encoder"]}


@torch.no_grad()
def bench_prompt(reps: int) -> dict:
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    import sam_model

    ours, ref = perturbed_models("sam2.1_hiera_tiny")
    gen = torch.Generator().manual_seed(2)
    emb = torch.randn(1, 256, 64, 64, generator=gen)
    high = [torch.randn(1, 32, 256, 256, generator=gen), torch.randn(1, 64, 128, 128, generator=gen)]
    p_ours = sam_model.SamPredictor(ours)
    p_ours.set_image_embedding(emb, original_size=(1024, 1024), high_res_features=high)
    p_ref = SAM2ImagePredictor(ref)
    p_ref._features = {"image_embed": emb, "high_res_feats": high}
    p_ref._orig_hw, p_ref._is_image_set = [(1024, 1024)], True
    out = point_prompt_comparison(p_ours, p_ref, reps)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--out", default=str(HERE / "results" / "sam2.json"))
    args = parser.parse_args(argv)
    setup_paths()
    enc_reps, prompt_reps = (1, 10) if args.quick else (5, 30)
    load = load_average()
    report = {"machine": None, "encoder": {}, "prompt": None}
    for name in YAML:
        print(f"encoder {name} ...", flush=True)
        report["encoder"][name] = bench_encoder(name, enc_reps)
    print("prompt ...", flush=True)
    report["prompt"] = bench_prompt(prompt_reps)
    report["machine"] = {"processor": platform.processor(), **machine(load)}
    enc, pr = report["encoder"], report["prompt"]
    ok = {f"encoder_{n}": enc[n]["speedup"] >= TARGETS["encoder"] for n in YAML}
    ok["prompt"] = pr["multimask"]["speedup"] >= TARGETS["prompt"]
    report["targets"] = {"values": TARGETS, "met": ok}
    rows = [(f"encoder {n} (1024^2)", f"{enc[n]['ours_s']:.2f} s", f"{enc[n]['reference_s']:.2f} s",
             enc[n]["speedup"], f">= 1.3x (paired median {enc[n]['paired_speedup_median']:.2f}x)")
            for n in YAML]
    rows += [
        ("1 point, 3 masks, full res", f"{pr['multimask']['ours_ms']:.0f} ms",
         f"{pr['multimask']['reference_ms']:.0f} ms", pr["multimask"]["speedup"], ">= 1.5x"),
        ("1 point, 1 mask, full res", f"{pr['single']['ours_ms']:.0f} ms",
         f"{pr['single']['reference_ms']:.0f} ms", pr["single"]["speedup"], ""),
    ]
    print(f"\n{'case':36} {'ours':>10} {'reference':>10} {'speedup':>8}  target")
    for case, a, b, s, target in rows:
        print(f"{case:36} {a:>10} {b:>10} {s:>7.2f}x  {target}")
    print(f"targets met: {ok}  (load average {load} at start)")
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
