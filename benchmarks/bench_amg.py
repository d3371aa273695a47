"""Automatic mask generation, ours against the reference, end to end.

One 1024x1024 image, the same weights, the same process. For each model:

* ours: ``sam_model.SamAutomaticMaskGenerator`` on our ``Sam``;
* reference: ``segment_anything.SamAutomaticMaskGenerator`` on the official
  model code (``segment_anything``'s prompt encoder and mask decoder, and its
  ViT for vit_b) loaded with the same state dict.

Models:

* ``sam_tiny``: the shipped weights when installed, else the sam_tiny
  architecture with random weights (128-channel decoder; the reference side
  uses our small encoder module, as the official package has none like it);
* ``vit_b``: ViT-B with random weights (256-channel decoder);
* ``synthetic``: the test suite's colour-fill model (``tests/sam_model/
  amg_synthetic.py``) at 1024 px, the same instance on both sides: its decoder
  costs nothing and many real masks pass the filters, so it times everything
  around the decoder (upsampling, stability, boxes, RLE, merging, NMS).

Reported per model: total seconds, encoder and decoder seconds (timed by
hooks on the model parts; ours runs the decoder's parts itself and is timed
around that), decoder calls (prompts) per second, masks found,
and how many of the reference masks ours matches at IoU >= 0.9.

    python -m benchmarks.bench_amg                          # all three, 32x32 points
    python -m benchmarks.bench_amg --models sam_tiny --points-per-side 16
    python -m benchmarks.bench_amg --models sam_tiny@0.3/0.3   # IoU / stability thresholds

Every run uses the reference's default parameters unless ``NAME@IOU/STAB``
lowers the two filter thresholds (for models too unsure of themselves for
the defaults to keep any mask).

Results go to ``benchmarks/results/bench_amg.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TARGET_SPEEDUP = 3.0


def _setup_paths() -> None:
    for p in (REPO, REPO / "tests", REPO / "tests" / "sam_model"):
        if str(p) not in sys.path:
            sys.path.insert(0, str(p))
    import reference_shims

    reference_shims.install()


def _perturb(model: torch.nn.Module, seed: int = 1) -> None:
    """Noise on every float parameter so that zero-initialised ones matter."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, value in model.state_dict().items():
            if value.dtype.is_floating_point:
                if key.endswith("running_var"):
                    value.copy_(0.5 + torch.rand(value.shape, generator=gen))
                else:
                    value.add_(torch.randn(value.shape, generator=gen) * 0.02)


def _reference_like(ours, config):
    """The official prompt encoder and mask decoder around our encoder, same weights."""
    from segment_anything.modeling import MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    dec = config.decoder
    emb = config.image_embedding_size
    ref = Sam(
        image_encoder=ours.image_encoder,
        prompt_encoder=PromptEncoder(
            embed_dim=config.prompt_embed_dim, image_embedding_size=(emb, emb),
            input_image_size=(config.img_size, config.img_size),
            mask_in_chans=config.mask_in_chans,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=dec.num_multimask_outputs,
            transformer=TwoWayTransformer(
                depth=dec.depth, embedding_dim=config.prompt_embed_dim,
                mlp_dim=dec.mlp_dim, num_heads=dec.num_heads,
            ),
            transformer_dim=config.prompt_embed_dim,
            iou_head_depth=dec.iou_head_depth,
            iou_head_hidden_dim=dec.iou_head_hidden_dim,
        ),
        pixel_mean=list(config.pixel_mean), pixel_std=list(config.pixel_std),
    )
    ref.load_state_dict(ours.state_dict())
    return ref.eval()


def _models(name: str):
    """(ours, reference, description) with the same weights."""
    import sam_model

    if name == "synthetic":
        from amg_synthetic import synthetic_sam

        model = synthetic_sam(1024)
        return model, model, "colour-fill test model at 1024 px (same instance on both sides)"
    if name == "sam_tiny":
        from sam_model.sam_tiny import sam_tiny_config

        config = sam_tiny_config()
        torch.manual_seed(0)
        if sam_model.MODELS["sam_tiny"].packaged.is_file():
            ours = sam_model.build_sam("sam_tiny")
            what = "sam_tiny, shipped weights"
        else:
            ours = sam_model.build_sam("sam_tiny", pretrained=False)
            _perturb(ours)
            what = "sam_tiny architecture, random weights (shipped weights not installed)"
        return ours.eval(), _reference_like(ours, config), what
    if name == "vit_b":
        from segment_anything.build_sam import sam_model_registry

        torch.manual_seed(0)
        ours = sam_model.build_sam("vit_b", pretrained=False)
        _perturb(ours)
        ref = sam_model_registry["vit_b"]()
        ref.load_state_dict(ours.state_dict())
        return ours.eval(), ref.eval(), "vit_b, random weights"
    raise ValueError(f"unknown model {name!r}")


class _PartTimer:
    """Seconds and calls spent in a module, by forward hooks."""

    def __init__(self, module: torch.nn.Module, count_prompts: bool) -> None:
        self.seconds = 0.0
        self.calls = 0
        self.prompts = 0
        self._start = 0.0
        self._count_prompts = count_prompts
        self._handles = [
            module.register_forward_pre_hook(self._pre, with_kwargs=True),
            module.register_forward_hook(self._post, with_kwargs=True),
        ]

    def _pre(self, module, args, kwargs):
        self._start = time.perf_counter()
        if self._count_prompts:
            sparse = kwargs.get("sparse_prompt_embeddings", args[2] if len(args) > 2 else None)
            self.prompts += int(sparse.shape[0])

    def _post(self, module, args, kwargs, output):
        self.seconds += time.perf_counter() - self._start
        self.calls += 1

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


class _DecodeTimer:
    """Seconds and prompts in ``sam_model.mask_candidates.decode_passing``.

    Our generator runs the decoder's parts itself (the IoU head before the
    mask upscaling), not the decoder module's forward, so it is timed here.
    """

    def __init__(self) -> None:
        from sam_model import mask_candidates

        self.seconds = 0.0
        self.prompts = 0
        self._module = mask_candidates
        self._original = mask_candidates.decode_passing

        def timed(predictor, points_xy, **kw):
            start = time.perf_counter()
            try:
                return self._original(predictor, points_xy, **kw)
            finally:
                self.seconds += time.perf_counter() - start
                self.prompts += len(points_xy)

        mask_candidates.decode_passing = timed

    def remove(self) -> None:
        self._module.decode_passing = self._original


def _run(generator_cls, model, image, kwargs):
    enc = _PartTimer(model.image_encoder, count_prompts=False)
    if generator_cls.__module__.startswith("sam_model"):
        dec = _DecodeTimer()
    else:
        dec = _PartTimer(model.mask_decoder, count_prompts=True)
    try:
        gen = generator_cls(model, **kwargs)
        start = time.perf_counter()
        with torch.no_grad():
            records = gen.generate(image)
        total = time.perf_counter() - start
    finally:
        enc.remove()
        dec.remove()
    return records, {
        "total_s": round(total, 3),
        "encoder_s": round(enc.seconds, 3),
        "decoder_s": round(dec.seconds, 3),
        "decoder_prompts": dec.prompts,
        "decoder_prompts_per_s": round(dec.prompts / dec.seconds, 2) if dec.seconds else None,
        "other_s": round(total - enc.seconds - dec.seconds, 3),
        "masks": len(records),
    }


def _boxes(records) -> np.ndarray:
    b = np.array([r["bbox"] for r in records], dtype=np.int64).reshape(-1, 4)
    b[:, 2:] += b[:, :2]
    return b


def matched_share(ours, theirs, iou: float = 0.9) -> float | None:
    """Share of the reference masks that one of ours matches at IoU >= ``iou``."""
    if not theirs:
        return None if ours else 1.0
    bo, bt = _boxes(ours), _boxes(theirs)
    hits = 0
    for t, rec in enumerate(theirs):
        a = rec["segmentation"]
        ix0 = np.maximum(bo[:, 0], bt[t, 0])
        ix1 = np.minimum(bo[:, 2], bt[t, 2])
        iy0 = np.maximum(bo[:, 1], bt[t, 1])
        iy1 = np.minimum(bo[:, 3], bt[t, 3])
        for o in np.flatnonzero((ix1 >= ix0) & (iy1 >= iy0)):
            b = ours[o]["segmentation"]
            inter = np.logical_and(a, b).sum()
            union = rec["area"] + ours[o]["area"] - inter
            if union and inter / union >= iou:
                hits += 1
                break
    return hits / len(theirs)


def bench_model(name: str, image: np.ndarray, kwargs: dict) -> dict:
    from segment_anything import SamAutomaticMaskGenerator as Reference

    from sam_model import SamAutomaticMaskGenerator as Ours

    ours_model, ref_model, what = _models(name)
    print(f"-- {name}: {what}; {kwargs}", flush=True)
    with torch.no_grad():  # first calls pay one-time costs (allocations, kernel choice)
        for model in (ours_model, ref_model):
            model.image_encoder(torch.zeros(1, 3, 1024, 1024))
    load = os.getloadavg()[0]
    mine, t_ours = _run(Ours, ours_model, image, kwargs)
    print(f"   ours      {t_ours}", flush=True)
    theirs, t_ref = _run(Reference, ref_model, image, kwargs)
    print(f"   reference {t_ref}", flush=True)
    out = {
        "model": what,
        "parameters": kwargs,
        "ours": t_ours,
        "reference": t_ref,
        "speedup": round(t_ref["total_s"] / t_ours["total_s"], 2),
        "decoder_speedup": (
            round(t_ref["decoder_s"] / t_ours["decoder_s"], 2) if t_ours["decoder_s"] else None
        ),
        "reference_masks_matched_iou_0.9": matched_share(mine, theirs),
        "loadavg_before": round(load, 2),
        "loadavg_after": round(os.getloadavg()[0], 2),
    }
    print(f"   speedup {out['speedup']}x, matched {out['reference_masks_matched_iou_0.9']}",
          flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="sam_tiny,synthetic,vit_b")
    parser.add_argument("--points-per-side", type=int, default=32)
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1),
                        help="torch threads (on a shared, loaded machine 1 is steadier)")
    parser.add_argument("--vit-b-points-per-side", type=int, default=None,
                        help="a smaller grid for vit_b (its reference run takes long)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "bench_amg.json")
    args = parser.parse_args(argv)
    _setup_paths()
    from amg_synthetic import disc_scene

    torch.set_num_threads(args.threads)
    image = disc_scene(1024, 1024, n=80, seed=7)
    results = {}
    for spec in args.models.split(","):
        name, _, loose = spec.partition("@")
        kwargs = {"points_per_side": args.points_per_side}
        if name == "vit_b" and args.vit_b_points_per_side:
            kwargs["points_per_side"] = args.vit_b_points_per_side
        if loose:
            iou, stab = (float(v) for v in loose.split("/"))
            kwargs.update(pred_iou_thresh=iou, stability_score_thresh=stab)
        results[spec] = bench_model(name, image, kwargs)
    report = {
        "conditions": {
            "cpu_count": os.cpu_count(),
            "torch_threads": args.threads,
            "torch": torch.__version__,
            "machine": platform.machine(),
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "image": "1024x1024 synthetic disc scene (tests/sam_model/amg_synthetic.py, seed 7)",
            "note": "one run each, ours first, after one untimed encoder call per model; "
                    "the machine may be shared (see loadavg)",
        },
        "target_speedup": TARGET_SPEEDUP,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
