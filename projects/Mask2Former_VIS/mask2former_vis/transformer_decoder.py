"""The video masked-attention transformer decoder of Mask2Former-VIS.

Legend: B clips, T frames, Q queries, C hidden channels, K classes, h_l, w_l the size of level l,
H, W the size of the mask features (stride 4).

Q video queries attend to the features of all T frames at once: the memory of a level is the
(T * h_l * w_l) sequence of the clip, with a 3-D sine position code and a level embedding. Each layer
is masked cross-attention -> self-attention -> FFN (post-norm) and reads levels round robin, coarsest
first; the attention mask of a query is its previous mask tube resized to the level and thresholded
at 0.5, over all frames. Module names follow the official implementation, so checkpoints load under
``sem_seg_head.predictor.`` without renaming.
"""

from __future__ import annotations

import logging
from typing import Dict, List, Tuple

import fvcore.nn.weight_init as weight_init
import torch
import torch.nn.functional as F
from detectron2.layers import Conv2d
from torch import Tensor, nn

from vis_core.modeling.position_encoding import PositionEmbeddingSine3D
from vis_core.modeling.transformer_layers import (
    MLP,
    CrossAttentionLayer,
    FFNLayer,
    SelfAttentionLayer,
)

__all__ = ["VideoMultiScaleMaskedTransformerDecoder"]

logger = logging.getLogger(__name__)


class VideoMultiScaleMaskedTransformerDecoder(nn.Module):
    """Mask2Former-VIS's decoder: Q video queries, each one instance over the whole clip.

    Outputs (one dict): ``pred_logits`` (B, Q, K+1), ``pred_masks`` (B, Q, T, H, W) mask logits,
    ``pred_embeds`` (B, Q, C) the normalised query embeddings of the last layer (used to link
    windows), and with ``return_aux`` the earlier predictions in ``aux_outputs`` (a list of
    ``num_layers`` dicts with ``pred_logits`` and ``pred_masks``, the learnable queries' first).
    """

    _version = 2

    def __init__(
        self,
        in_channels: int,
        *,
        num_classes: int,
        hidden_dim: int = 256,
        num_queries: int = 100,
        nheads: int = 8,
        dim_feedforward: int = 2048,
        dec_layers: int = 9,
        pre_norm: bool = False,
        mask_dim: int = 256,
        enforce_input_project: bool = False,
        num_feature_levels: int = 3,
        masked_attention: bool = True,
    ):
        """
        Args:
            in_channels: channels of the multi-scale features from the pixel decoder.
            num_classes: K, object classes (the classifier has K+1 outputs, the last "no object").
            hidden_dim: C.
            num_queries: Q.
            nheads: attention heads.
            dim_feedforward: FFN width.
            dec_layers: transformer layers (9 in the paper; the prediction from the learnable queries
                comes on top, so there are ``dec_layers + 1`` predictions).
            pre_norm: pre-LayerNorm layers instead of post-norm.
            mask_dim: channels of the mask features (the mask-embedding output).
            enforce_input_project: a 1x1 conv on the features even when in_channels == hidden_dim.
            num_feature_levels: levels read round robin (3).
            masked_attention: restrict each query's cross-attention to the foreground of its mask
                from the previous layer (the paper); False = attend to the whole clip.
        """
        super().__init__()
        if dec_layers < 0:
            raise ValueError(f"dec_layers must be >= 0, got {dec_layers}")
        self.pe_layer = PositionEmbeddingSine3D(hidden_dim // 2, normalize=True)
        self.num_heads = nheads
        self.num_layers = dec_layers
        self.num_classes = num_classes
        self.transformer_self_attention_layers = nn.ModuleList(
            SelfAttentionLayer(hidden_dim, nheads, 0.0, pre_norm) for _ in range(dec_layers)
        )
        self.transformer_cross_attention_layers = nn.ModuleList(
            CrossAttentionLayer(hidden_dim, nheads, 0.0, pre_norm) for _ in range(dec_layers)
        )
        self.transformer_ffn_layers = nn.ModuleList(
            FFNLayer(hidden_dim, dim_feedforward, 0.0, pre_norm) for _ in range(dec_layers)
        )
        self.decoder_norm = nn.LayerNorm(hidden_dim)
        self.num_queries = num_queries
        self.query_feat = nn.Embedding(num_queries, hidden_dim)
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        self.num_feature_levels = num_feature_levels
        self.masked_attention = masked_attention
        self.level_embed = nn.Embedding(num_feature_levels, hidden_dim)
        self.input_proj = nn.ModuleList()
        for _ in range(num_feature_levels):
            if in_channels != hidden_dim or enforce_input_project:
                conv = Conv2d(in_channels, hidden_dim, kernel_size=1)
                weight_init.c2_xavier_fill(conv)
                self.input_proj.append(conv)
            else:
                self.input_proj.append(nn.Sequential())
        self.class_embed = nn.Linear(hidden_dim, num_classes + 1)
        self.mask_embed = MLP(hidden_dim, hidden_dim, mask_dim, 3)

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        # Version 1 (the first official release) called the learnable query features static_query.
        version = local_metadata.get("version", None)
        if version is None or version < 2:
            renamed = False
            for k in list(state_dict.keys()):
                if k.startswith(prefix) and "static_query" in k:
                    state_dict[k.replace("static_query", "query_feat")] = state_dict.pop(k)
                    renamed = True
            if renamed:
                logger.warning(
                    "%s: renamed static_query -> query_feat (checkpoint of the first release).",
                    type(self).__name__,
                )
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def forward(
        self,
        features: List[Tensor],
        mask_features: Tensor,
        num_frames: int,
        return_aux: bool = True,
    ) -> Dict[str, object]:
        """
        Args:
            features: ``num_feature_levels`` tensors (B*T, C_in, h_l, w_l), coarsest first.
            mask_features: (B*T, mask_dim, H, W).
            num_frames: T (frames of each clip; the B*T images are clip after clip).
            return_aux: also return the intermediate predictions (deep supervision).
        Returns:
            see the class docstring.
        """
        if len(features) != self.num_feature_levels:
            raise ValueError(
                f"expected {self.num_feature_levels} feature levels, got {len(features)}"
            )
        BT = mask_features.shape[0]
        if BT % num_frames != 0:
            raise ValueError(f"{BT} images is not a whole number of clips of {num_frames} frames")
        B, T = BT // num_frames, num_frames
        src, pos, sizes = [], [], []
        for i, x in enumerate(features):
            h, w = x.shape[-2:]
            sizes.append((h, w))
            p = self.pe_layer(x.view(B, T, -1, h, w))  # (B, T, C, h, w)
            pos.append(p.permute(1, 3, 4, 0, 2).reshape(T * h * w, B, -1))  # -> (T*h*w, B, C)
            s = self.input_proj[i](x) + self.level_embed.weight[i][None, :, None, None]
            s = s.view(B, T, -1, h, w)  # (B*T, C, h, w) -> (B, T, C, h, w)
            src.append(s.permute(1, 3, 4, 0, 2).reshape(T * h * w, B, -1))  # -> (T*h*w, B, C)
        mask_features = mask_features.view(B, T, *mask_features.shape[1:])  # (B, T, C, H, W)

        query_embed = self.query_embed.weight.unsqueeze(1).repeat(1, B, 1)  # (Q, B, C)
        output = self.query_feat.weight.unsqueeze(1).repeat(1, B, 1)  # (Q, B, C)

        logits, masks, attn_mask, embeds = self.forward_prediction_heads(
            output, mask_features, sizes[0]
        )
        predictions = [(logits, masks)]
        for i in range(self.num_layers):
            level = i % self.num_feature_levels
            if self.masked_attention:
                # a query whose mask is empty everywhere attends to the whole memory
                attn_mask[torch.where(attn_mask.sum(-1) == attn_mask.shape[-1])] = False
            else:
                attn_mask = None
            output = self.transformer_cross_attention_layers[i](
                output, src[level], memory_mask=attn_mask, pos=pos[level], query_pos=query_embed
            )
            output = self.transformer_self_attention_layers[i](output, query_pos=query_embed)
            output = self.transformer_ffn_layers[i](output)
            logits, masks, attn_mask, embeds = self.forward_prediction_heads(
                output, mask_features, sizes[(i + 1) % self.num_feature_levels]
            )
            predictions.append((logits, masks))

        out = {"pred_logits": logits, "pred_masks": masks, "pred_embeds": embeds}
        if return_aux:
            out["aux_outputs"] = [
                {"pred_logits": lg, "pred_masks": mk} for lg, mk in predictions[:-1]
            ]
        return out

    def forward_prediction_heads(
        self, output: Tensor, mask_features: Tensor, attn_size: Tuple[int, int]
    ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """
        Args:
            output: (Q, B, C) query features; mask_features: (B, T, C_m, H, W).
            attn_size: (h, w) of the level the next layer attends to.
        Returns:
            class logits (B, Q, K+1), mask logits (B, Q, T, H, W), the next attention mask
            (B * heads, Q, T*h*w) bool (True = blocked), and the normalised embeddings (B, Q, C).
        """
        decoder_output = self.decoder_norm(output).transpose(0, 1)  # (B, Q, C)
        outputs_class = self.class_embed(decoder_output)
        mask_embed = self.mask_embed(decoder_output)
        outputs_mask = torch.einsum("bqc,btchw->bqthw", mask_embed, mask_features)
        B, Q, T = outputs_mask.shape[:3]
        attn = F.interpolate(
            outputs_mask.flatten(0, 1), size=attn_size, mode="bilinear", align_corners=False
        )  # (B*Q, T, h, w), frames as channels
        attn = attn.view(B, Q, T * attn_size[0] * attn_size[1])  # -> (B, Q, T*h*w)
        attn = attn.sigmoid() < 0.5
        attn = (
            attn.unsqueeze(1).repeat(1, self.num_heads, 1, 1).flatten(0, 1)
        )  # (B*heads, Q, T*h*w)
        return outputs_class, outputs_mask, attn.detach(), decoder_output
