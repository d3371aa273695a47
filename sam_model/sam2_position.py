"""Position encodings of SAM 2 that have no parameters.

* :func:`sine_position_encoding`: the 2D sine/cosine encoding of a feature grid
  (DETR style, coordinates normalised to (0, 2*pi]) that the FPN neck and the
  memory encoder attach to their outputs.
* :func:`axial_rotary_frequencies` / :func:`apply_rotary`: rotary encoding of
  the memory attention (half the pairs of a head rotate with the x position,
  half with the y position of the token).
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch import Tensor


@lru_cache(maxsize=16)
def _sine_grid(h: int, w: int, channels: int, temperature: float) -> Tensor:
    half = channels // 2
    eps, scale = 1e-6, 2 * math.pi
    y = torch.arange(1, h + 1, dtype=torch.float32)
    x = torch.arange(1, w + 1, dtype=torch.float32)
    y = y / (y[-1] + eps) * scale
    x = x / (x[-1] + eps) * scale
    k = torch.arange(half, dtype=torch.float32)
    dim_t = temperature ** (2 * torch.div(k, 2, rounding_mode="floor") / half)
    px = x[:, None] / dim_t  # W x half
    py = y[:, None] / dim_t  # H x half
    px = torch.stack((px[:, 0::2].sin(), px[:, 1::2].cos()), dim=2).flatten(1)
    py = torch.stack((py[:, 0::2].sin(), py[:, 1::2].cos()), dim=2).flatten(1)
    grid = torch.cat((py[:, None, :].expand(h, w, half), px[None, :, :].expand(h, w, half)),
                     dim=2)
    return grid.permute(2, 0, 1).contiguous()


def sine_position_encoding(h: int, w: int, channels: int, *, temperature: float = 10000.0,
                           device=None) -> Tensor:
    """CxHxW encoding: first C/2 channels encode y, the rest x (sin/cos interleaved)."""
    if channels % 2:
        raise ValueError(f"the sine encoding needs an even channel count, got {channels}")
    return _sine_grid(int(h), int(w), int(channels), float(temperature)).to(device)


@lru_cache(maxsize=16)
def _axial(dim: int, end_x: int, end_y: int, theta: float) -> Tensor:
    freqs = 1.0 / (theta ** (torch.arange(0, dim, 4)[: dim // 4].float() / dim))
    t = torch.arange(end_x * end_y, dtype=torch.float32)
    tx = t % end_x
    ty = torch.div(t, end_x, rounding_mode="floor")
    ax, ay = torch.outer(tx, freqs), torch.outer(ty, freqs)
    return torch.cat([torch.polar(torch.ones_like(ax), ax), torch.polar(torch.ones_like(ay), ay)],
                     dim=-1)


def axial_rotary_frequencies(dim: int, end_x: int, end_y: int, theta: float = 10000.0) -> Tensor:
    """(end_x*end_y) x (dim/2) complex rotations of a row-major token grid."""
    return _axial(int(dim), int(end_x), int(end_y), float(theta))


def apply_rotary(x: Tensor, freqs: Tensor, repeat: int = 1) -> Tensor:
    """Rotate consecutive channel pairs of x (B x heads x N x d) by ``freqs`` (N/repeat x d/2).

    ``repeat``: the token sequence is ``repeat`` copies of the grid (memories of
    several frames), each rotated by the same frequencies.
    """
    if x.shape[-2] == 0:
        return x
    *lead, n, d = x.shape
    if n % repeat:
        raise ValueError(f"{n} tokens are not {repeat} copies of a grid")
    # the copies as one more axis: the frequencies broadcast over it (no repeated table)
    xc = torch.view_as_complex(x.float().reshape(*lead, repeat, n // repeat, d // 2, 2))
    out = torch.view_as_real(xc * freqs.to(xc.device)).reshape(*lead, n, d)
    return out.type_as(x)
