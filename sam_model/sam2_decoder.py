"""SAM 2's prompt encoder and mask decoder (``sam_prompt_encoder.*``, ``sam_mask_decoder.*``).

Differences from SAM 1, all in the official SAM 2.1 checkpoints:

* prompt encoder: box corners arrive as points with labels 2 and 3 (the
  predictor puts them before the clicks), and a padding point is always added;
* mask decoder: an object-score token before the IoU token, with its own MLP
  head (logit > 0: the object is present); the IoU head ends in a sigmoid; the
  upscaling adds the trunk's stride-8 and stride-4 maps (projected by
  ``conv_s1``/``conv_s0``) after each transposed convolution; a single-mask
  request may fall back to the best multimask output when the single mask is
  unstable (``dynamic_multimask_via_stability``);
* the two-way transformer's token MLP is stored as ``mlp.layers.0/1``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .common import MLP, LayerNorm2d
from .prompt_encoder import PromptEncoder
from .transformer import TwoWayTransformer

LABEL_PAD, LABEL_BOX_TOP_LEFT, LABEL_BOX_BOTTOM_RIGHT = -1, 2, 3


class Sam2PromptEncoder(PromptEncoder):
    """SAM 1's prompt encoder with point labels 2/3 (box corners) understood.

    Points: BxNx2 XY pixels of the SxS input with labels -1 (padding), 0, 1, 2, 3.
    """

    def _embed_points(self, points: Tensor, labels: Tensor, pad: bool) -> Tensor:
        emb = super()._embed_points(points, labels, pad)
        if pad:
            labels = torch.cat([labels, labels.new_full((labels.shape[0], 1), LABEL_PAD)], dim=1)
        lab = labels.to(emb.device).unsqueeze(-1)
        emb = emb + (lab == LABEL_BOX_TOP_LEFT) * self.point_embeddings[2].weight
        return emb + (lab == LABEL_BOX_BOTTOM_RIGHT) * self.point_embeddings[3].weight


def sam2_two_way_transformer(*, depth: int, embedding_dim: int, num_heads: int, mlp_dim: int
                             ) -> TwoWayTransformer:
    """SAM 1's two-way transformer with the token MLP laid out as SAM 2 stores it.

    The MLP computes the same function (linear, ReLU, linear); only its
    parameter names differ (``layers.0/1`` instead of ``lin1/lin2``).
    """
    transformer = TwoWayTransformer(depth=depth, embedding_dim=embedding_dim,
                                    num_heads=num_heads, mlp_dim=mlp_dim)
    for layer in transformer.layers:
        layer.mlp = MLP(embedding_dim, mlp_dim, embedding_dim, 2)
    return transformer


class Sam2MaskDecoder(nn.Module):
    """Masks, IoU, object score and output tokens from an embedding and prompts.

    Args:
        transformer_dim: C (256 officially).
        transformer: a two-way transformer (image 1|BxCxhxw, pe, tokens BxNxC).
        num_multimask_outputs: 3.
        iou_head_depth, iou_head_hidden_dim: the IoU MLP.
        use_high_res_features: add the stride-4/8 maps in the upscaling.
        pred_obj_scores_mlp: a 3-layer MLP (else one linear layer) for the object score.
        dynamic_multimask_via_stability: for single-mask requests, use the best
            multimask output when the single mask's stability (area above
            +delta over area above -delta) is below ``..._thresh``.
    """

    def __init__(self, *, transformer_dim: int, transformer: nn.Module,
                 num_multimask_outputs: int = 3, iou_head_depth: int = 3,
                 iou_head_hidden_dim: int = 256, use_high_res_features: bool = True,
                 pred_obj_scores_mlp: bool = True,
                 dynamic_multimask_via_stability: bool = True,
                 dynamic_multimask_stability_delta: float = 0.05,
                 dynamic_multimask_stability_thresh: float = 0.98) -> None:
        super().__init__()
        c, c4, c8 = transformer_dim, transformer_dim // 4, transformer_dim // 8
        self.transformer_dim = c
        self.transformer = transformer
        self.num_multimask_outputs = num_multimask_outputs
        self.num_mask_tokens = num_multimask_outputs + 1
        self.iou_token = nn.Embedding(1, c)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, c)
        self.obj_score_token = nn.Embedding(1, c)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(c, c4, kernel_size=2, stride=2),
            LayerNorm2d(c4),
            nn.GELU(),
            nn.ConvTranspose2d(c4, c8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.use_high_res_features = use_high_res_features
        if use_high_res_features:
            self.conv_s0 = nn.Conv2d(c, c8, kernel_size=1)
            self.conv_s1 = nn.Conv2d(c, c4, kernel_size=1)
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(c, c, c8, 3) for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(c, iou_head_hidden_dim, self.num_mask_tokens,
                                       iou_head_depth, sigmoid_output=True)
        self.pred_obj_score_head = MLP(c, c, 1, 3) if pred_obj_scores_mlp else nn.Linear(c, 1)
        self.dynamic_multimask_via_stability = dynamic_multimask_via_stability
        self.stability_delta = dynamic_multimask_stability_delta
        self.stability_thresh = dynamic_multimask_stability_thresh

    def forward(self, image_embeddings: Tensor, image_pe: Tensor,
                sparse_prompt_embeddings: Tensor, dense_prompt_embeddings: Tensor,
                multimask_output: bool, high_res_features: list[Tensor] | None = None
                ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Predict masks.

        Args:
            image_embeddings: 1xCxhxw (shared by the B prompts) or BxCxhxw.
            image_pe: 1xCxhxw.
            sparse_prompt_embeddings: BxNxC; dense_prompt_embeddings: (1|B)xCxhxw.
            multimask_output: the 3 multimask outputs instead of the single one.
            high_res_features: [stride-4 (1|B)x(C/8)x4hx4w, stride-8 (1|B)x(C/4)x2hx2w]
                (already projected by ``conv_s0``/``conv_s1``).

        Returns:
            mask logits BxMx4hx4w, IoU BxM (M = 3 or 1), the output tokens of
            the returned masks BxM'xC (M' = 3 with multimask, else 1: the
            single-mask token, as the official model keeps it for object
            pointers) and object-score logits Bx1.
        """
        masks, iou, mask_tokens, obj = self.predict_masks(
            image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings,
            high_res_features)
        if multimask_output:
            return masks[:, 1:], iou[:, 1:], mask_tokens[:, 1:], obj
        if self.dynamic_multimask_via_stability and not self.training:
            masks, iou = self._stable_single(masks, iou)
        else:
            masks, iou = masks[:, :1], iou[:, :1]
        return masks, iou, mask_tokens[:, :1], obj

    def predict_masks(self, image_embeddings: Tensor, image_pe: Tensor, sparse: Tensor,
                      dense: Tensor, high_res_features: list[Tensor] | None
                      ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """All 4 masks BxKx4hx4w, IoU BxK, mask tokens BxKxC and object logits Bx1."""
        b = sparse.shape[0]
        out_tokens = torch.cat(
            [self.obj_score_token.weight, self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = torch.cat([out_tokens.unsqueeze(0).expand(b, -1, -1), sparse], dim=1)
        if dense.shape[0] > 1 and dense.stride(0) == 0:
            dense = dense[:1]  # the same "no mask" embedding for every prompt
        src = image_embeddings + dense
        h, w = src.shape[-2:]
        hs, keys = self.transformer(src, image_pe, tokens)
        k = self.num_mask_tokens
        mask_tokens = hs[:, 2:2 + k]
        grid = keys.transpose(1, 2).reshape(keys.shape[0], -1, h, w)
        up = self._upscale(grid, high_res_features)  # (1|B) x C/8 x 4h x 4w
        hyper = torch.stack(
            [self.output_hypernetworks_mlps[i](mask_tokens[:, i]) for i in range(k)], dim=1)
        c8 = up.shape[1]
        masks = (hyper @ up.reshape(up.shape[0], c8, -1)).view(b, k, 4 * h, 4 * w)
        iou = self.iou_prediction_head(hs[:, 1])
        obj = self.pred_obj_score_head(hs[:, 0])
        return masks, iou, mask_tokens, obj

    def _upscale(self, grid: Tensor, high_res: list[Tensor] | None) -> Tensor:
        up1, norm, act1, up2, act2 = self.output_upscaling
        if not self.use_high_res_features:
            return act2(up2(act1(norm(up1(grid)))))
        if high_res is None:
            raise ValueError("this decoder needs the high-resolution features (stride 4 and 8)")
        s0, s1 = high_res
        x = act1(norm(up1(grid) + s1))
        return act2(up2(x) + s0)

    def _stable_single(self, masks: Tensor, iou: Tensor) -> tuple[Tensor, Tensor]:
        """Single mask, or the best multimask output where the single one is unstable."""
        multi_iou = iou[:, 1:]
        best = multi_iou.argmax(dim=-1)
        rows = torch.arange(masks.shape[0], device=masks.device)
        best_masks = masks[:, 1:][rows, best].unsqueeze(1)
        best_iou = multi_iou[rows, best].unsqueeze(1)
        single, single_iou = masks[:, :1], iou[:, :1]
        flat = single.flatten(-2)
        inter = (flat > self.stability_delta).sum(-1).float()
        union = (flat > -self.stability_delta).sum(-1).float()
        stability = torch.where(union > 0, inter / union, torch.ones_like(inter))
        stable = stability >= self.stability_thresh  # B x 1
        return (torch.where(stable[..., None, None], single, best_masks),
                torch.where(stable, single_iou, best_iou))
