"""Matrix NMS (SOLOv2, arXiv 2003.10152): soft, parallel suppression of overlapping masks."""

import torch

__all__ = ["matrix_nms"]


def matrix_nms(
    masks: torch.Tensor,
    labels: torch.Tensor,
    scores: torch.Tensor,
    *,
    kernel: str = "gaussian",
    sigma: float = 2.0,
    class_agnostic: bool = False,
) -> torch.Tensor:
    """Decay the scores of masks that overlap higher-scored masks of the same class.

    Each mask j is decayed by min over higher-scored masks i of f(IoU_ij) / f(IoU_max,i), where
    IoU_max,i is the largest IoU of mask i with any mask scored above it (the compensation term), and
    f(x) = exp(-sigma * x^2) ("gaussian") or f(x) = 1 - x ("linear").

    Args:
        masks: (N, H, W) binary masks (bool or float), sorted by descending ``scores``.
        labels: (N,) class of each mask.
        scores: (N,) scores in descending order.
        kernel: "gaussian" or "linear".
        sigma: the gaussian kernel's sigma.
        class_agnostic: suppress across classes too.

    Returns:
        (N,) the decayed scores, in the input order.
    """
    if kernel not in ("gaussian", "linear"):
        raise ValueError(f"matrix_nms: kernel must be 'gaussian' or 'linear', got {kernel!r}")
    n = scores.numel()
    if masks.shape[0] != n or labels.numel() != n:
        raise ValueError(
            f"matrix_nms: {masks.shape[0]} masks, {labels.numel()} labels and {n} scores; "
            "expected the same number"
        )
    if n == 0:
        return scores.clone()
    flat = masks.reshape(n, -1).float()  # (N, H*W)
    areas = flat.sum(dim=1)  # (N,)
    inter = flat @ flat.t()  # (N, N)
    union = areas[:, None] + areas[None, :] - inter
    iou = (inter / union.clamp(min=1e-6)).triu(diagonal=1)  # iou[i, j], i scored above j
    if not class_agnostic:
        same = (labels[:, None] == labels[None, :]).float().triu(diagonal=1)
        iou = iou * same
    # Compensation: how much mask i (the suppressor) is itself suppressed.
    compensate = iou.max(dim=0).values[:, None].expand(n, n)  # (N, N), row i: IoU_max of mask i
    if kernel == "gaussian":
        decay = torch.exp(-sigma * (iou**2 - compensate**2))
    else:
        decay = (1 - iou) / (1 - compensate).clamp(min=1e-6)
    coefficient = decay.min(dim=0).values  # (N,), over suppressors i
    return scores * coefficient
