"""Float32 matrix products of the CPU inference paths, through oneDNN.

PyTorch's float32 ``linear`` and ``matmul`` on the CPU call MKL's sgemm. On the
development VM (AMD EPYC with AVX-512) MKL runs a generic code path
(``MKL_VERBOSE=1`` reports "Intel(R) Architecture processors") while oneDNN's
matmul, which picks its code by instruction set, uses AVX-512 and did the same
products 1.5-3x faster (one thread). The SAM 2
trunk, neck and memory attention use these functions where no gradient is
needed; they fall back to the plain torch calls elsewhere (autograd, GPUs,
other dtypes, autocast, compilation, or a torch built without oneDNN).

Results equal torch's up to float32 rounding (another summation order).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SCORE_BLOCK = 1 << 22  # score elements per block of :func:`attention` (16 MB)
MAX_QUERY_CHUNK = 512


def _has_onednn_linear() -> bool:
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        return hasattr(torch.ops.mkldnn, "_linear_pointwise")
    except (AttributeError, RuntimeError):
        return False


_ONEDNN = _has_onednn_linear()


def _autocast_on() -> bool:
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch < 2.4 has no device argument
        return torch.is_autocast_cpu_enabled()


def _compiling() -> bool:
    is_compiling = getattr(torch.compiler, "is_compiling", None)  # torch >= 2.3
    return bool(is_compiling is not None and is_compiling())


def eager_cpu_inference(x: Tensor) -> bool:
    """Whether ``x`` is float32 on the CPU with autograd, autocast and compilation off."""
    return (x.device.type == "cpu" and x.dtype == torch.float32 and not torch.is_grad_enabled()
            and not _autocast_on() and not _compiling())


def usable(x: Tensor) -> bool:
    """Whether :func:`linear` and :func:`attention` route ``x`` through oneDNN."""
    return _ONEDNN and eager_cpu_inference(x)


def linear(x: Tensor, layer: nn.Linear, *, activation: str | None = None) -> Tensor:
    """``layer(x)`` (...xin -> ...xout), then ``activation``: None, "gelu" (exact, erf) or
    "relu" (fused into the product on the oneDNN path)."""
    return linear_weights(x, layer.weight, layer.bias, activation=activation)


def linear_weights(x: Tensor, weight: Tensor, bias: Tensor | None, *,
                   activation: str | None = None) -> Tensor:
    """``F.linear(x, weight, bias)`` (weight out x in), then ``activation`` (see :func:`linear`)."""
    if activation not in (None, "gelu", "relu"):
        raise ValueError(f"unknown activation {activation!r} (None, 'gelu' or 'relu')")
    if usable(x) and weight.dtype == torch.float32:
        attr = activation or "none"
        return torch.ops.mkldnn._linear_pointwise(
            x, weight, bias, attr, [], "none" if activation == "gelu" else "")
    y = F.linear(x, weight, bias)
    if activation == "gelu":
        return F.gelu(y)
    return F.relu(y) if activation == "relu" else y


def mlp2(x: Tensor, first: nn.Linear, second: nn.Linear, activation: str = "gelu") -> Tensor:
    """``second(act(first(x)))``, the activation fused into the first product on oneDNN."""
    return linear(linear(x, first, activation=activation), second)


def attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Softmax attention, one head at a time: BxHxNxd, BxHxMxd, BxHxMxe -> BxHxNxe.

    Same as ``F.scaled_dot_product_attention`` (scale 1/sqrt(d)); on the oneDNN
    path the scores of a block of queries are formed, normalised and applied
    before the next block, blocks of about ``SCORE_BLOCK`` scores (at most
    ``MAX_QUERY_CHUNK`` queries): the temporaries stay small enough for the
    allocator to reuse them.
    """
    if not usable(q) or q.shape[-2] == 0 or k.shape[-2] == 0:
        return F.scaled_dot_product_attention(q, k, v)
    b, heads, n, d = q.shape
    out = q.new_empty(b, heads, n, v.shape[-1])
    scale = d ** -0.5
    chunk = max(16, min(MAX_QUERY_CHUNK, SCORE_BLOCK // k.shape[-2] // 16 * 16))
    for i in range(b):
        for h in range(heads):
            keys = k[i, h].contiguous()
            values_t = v[i, h].t().contiguous()  # e x M: the "weight" of the second product
            for s in range(0, n, chunk):
                qs = q[i, h, s:s + chunk] * scale
                scores = torch.ops.mkldnn._linear_pointwise(qs, keys, None, "none", [], "")
                probs = torch.softmax(scores, dim=-1)
                del scores
                out[i, h, s:s + chunk] = torch.ops.mkldnn._linear_pointwise(
                    probs, values_t, None, "none", [], "")
    return out
