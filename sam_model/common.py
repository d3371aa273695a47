"""Small building blocks shared by the SAM parts.

Parameter names follow the official checkpoints (``lin1``/``lin2`` for the
transformer MLP, ``layers.N`` for the head MLPs, ``weight``/``bias`` for the
channel norm) so that the published state dicts load strictly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm2d(nn.Module):
    """Layer norm over the channel axis of a BxCxHxW tensor.

    Each pixel is normalised across its C channels, then scaled and shifted by
    per-channel ``weight`` and ``bias``.
    """

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: BxCxHxW -> BxCxHxW."""
        y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.weight, self.bias, self.eps)
        return y.permute(0, 3, 1, 2)


class MLPBlock(nn.Module):
    """Two linear layers with an activation between: C -> hidden -> C."""

    def __init__(
        self, embedding_dim: int, mlp_dim: int, act: type[nn.Module] = nn.GELU
    ) -> None:
        super().__init__()
        self.lin1 = nn.Linear(embedding_dim, mlp_dim)
        self.lin2 = nn.Linear(mlp_dim, embedding_dim)
        self.act = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: ...xC -> ...xC."""
        return self.lin2(self.act(self.lin1(x)))


class MLP(nn.Module):
    """A stack of ``num_layers`` linear layers with an activation (ReLU) between them.

    Used for the mask decoder's hypernetwork heads and IoU head (and, with
    GELU, for SAM 2's Hiera blocks); the layers are stored as
    ``layers.0 .. layers.{num_layers-1}``.
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int,
        output_dim: int,
        num_layers: int,
        sigmoid_output: bool = False,
        activation: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        self.num_layers = num_layers
        widths_in = [input_dim] + [hidden_dim] * (num_layers - 1)
        widths_out = [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths_in, widths_out))
        self.sigmoid_output = sigmoid_output
        self.act = activation()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: ...x input_dim -> ...x output_dim."""
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = self.act(x)
        return torch.sigmoid(x) if self.sigmoid_output else x
