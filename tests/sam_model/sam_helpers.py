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
