"""Helpers of the sam_model tests (``from sam_helpers import ...``)."""

from __future__ import annotations

import torch


def drain(gen):
    """Run a progress generator (such as ``train``) to its end; return its result."""
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


def untrained_sam_tiny(seed: int = 0):
    """sam_tiny with seeded random weights at a 256-px input (training tests)."""
    from sam_model.sam_tiny import build_sam_tiny

    torch.manual_seed(seed)
    return build_sam_tiny(pretrained=False, img_size=256)


def perturb_(model: torch.nn.Module, seed: int = 0, scale: float = 0.05) -> torch.nn.Module:
    """Add noise to every float parameter and buffer so that parameters
    initialised to zero (relative positions, biases, embeddings) matter.
    Batch-norm variances stay positive."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, value in model.state_dict().items():
            if not value.dtype.is_floating_point or value.device.type == "meta":
                continue
            noise = torch.randn(value.shape, generator=gen) * scale
            if name.endswith("running_var"):
                value.copy_(0.5 + torch.rand(value.shape, generator=gen))
            else:
                value.add_(noise.to(value.dtype))
    return model


def reference_sam2(img_size: int, *, video: bool = False):
    """The reference ``sam2`` hiera_tiny (SAM 2.1) built from its hydra config at
    ``img_size`` px with random weights, as ``build_sam2`` (``video``:
    ``build_sam2_video_predictor``, with ``fill_hole_area=0``: its hole filling needs
    a CUDA extension) builds it; in eval mode."""
    import sam2  # noqa: F401  (hydra's config path)
    from hydra import compose
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    overrides = [
        f"++model.image_size={img_size}",
        "++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
        "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
        "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
        "++model.binarize_mask_from_pts_for_mem_enc=true",
    ]
    if video:
        overrides += ["++model._target_=sam2.sam2_video_predictor.SAM2VideoPredictor",
                      "++model.fill_hole_area=0"]
    cfg = compose(config_name="configs/sam2.1/sam2.1_hiera_t.yaml", overrides=overrides)
    OmegaConf.resolve(cfg)
    return instantiate(cfg.model, _recursive_=True).eval()
