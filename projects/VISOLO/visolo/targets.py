"""Grid targets of VISOLO: which instance owns each SOLO cell (centre sampling)."""

from typing import Tuple

import torch

__all__ = ["CENTER_REGIONS", "assign_cells"]

# How the extent of an object is measured (MODEL.VISOLO.CENTER_REGION).
CENTER_REGIONS = ("mask", "official")


def assign_cells(
    masks: torch.Tensor,
    grid: Tuple[int, int],
    image_size: Tuple[int, int],
    eps: float,
    extent: str = "mask",
) -> torch.Tensor:
    """SOLO centre sampling: the instance owning each grid cell, or -1.

    An instance owns the cells hit by the box of size eps * (extent height, extent width) centred on
    its mask's centre of mass. A cell claimed by several instances goes to the one whose centre is
    nearest to the cell's centre (the first one on ties). Empty masks own nothing.

    ``extent`` "mask" measures the mask's own height and width (the paper, SOLO); "official" measures
    from the image corner, (max row + 1, max column + 1), as the official code does (its minimum is
    taken over the background's zeros too), which gives larger centre regions the further an object
    lies from the top-left corner.

    Args:
        masks: (N, H, W) bool masks, in the (padded) input frame the grid is laid over.
        grid: (S_h, S_w).
        image_size: (H, W) the size the grid covers (the padded input).
        eps: centre-region scale (the paper's epsilon, 0.2).
        extent: "mask" or "official" (see above).
    Returns:
        (S_h * S_w,) long: owner index into the N masks, -1 for a background cell.
    """
    if extent not in CENTER_REGIONS:
        raise ValueError(
            f"MODEL.VISOLO.CENTER_REGION = {extent!r}; expected one of {list(CENTER_REGIONS)}"
        )
    sh, sw = grid
    h, w = image_size
    n = masks.shape[0]
    device = masks.device
    owner = torch.full((sh * sw,), -1, dtype=torch.long, device=device)
    if n == 0:
        return owner
    m = masks.float()
    area = m.sum(dim=(1, 2))  # (N,)
    valid = area > 0
    if not valid.any():
        return owner
    ys = torch.arange(m.shape[1], device=device, dtype=torch.float32)
    xs = torch.arange(m.shape[2], device=device, dtype=torch.float32)
    rows = m.sum(dim=2)  # (N, H)
    cols = m.sum(dim=1)  # (N, W)
    safe_area = area.clamp(min=1)
    cy = (rows * ys).sum(dim=1) / safe_area
    cx = (cols * xs).sum(dim=1) / safe_area
    big = float(max(m.shape[1], m.shape[2]) + 1)
    ymax = torch.where(rows > 0, ys, -1.0).amax(dim=1)
    xmax = torch.where(cols > 0, xs, -1.0).amax(dim=1)
    if extent == "mask":
        ymin = torch.where(rows > 0, ys, big).amin(dim=1)
        xmin = torch.where(cols > 0, xs, big).amin(dim=1)
    else:  # the official code's minimum over the whole frame: always row / column 0
        ymin = xmin = torch.zeros_like(ymax)
    half_h = eps * (ymax - ymin + 1) / 2
    half_w = eps * (xmax - xmin + 1) / 2
    cell_h, cell_w = h / sh, w / sw
    top = torch.floor((cy - half_h) / cell_h).clamp(min=0)
    bottom = torch.floor((cy + half_h) / cell_h).clamp(max=sh - 1)
    left = torch.floor((cx - half_w) / cell_w).clamp(min=0)
    right = torch.floor((cx + half_w) / cell_w).clamp(max=sw - 1)
    gi = torch.arange(sh, device=device, dtype=torch.float32)
    gj = torch.arange(sw, device=device, dtype=torch.float32)
    in_rows = (gi[None] >= top[:, None]) & (gi[None] <= bottom[:, None])  # (N, S_h)
    in_cols = (gj[None] >= left[:, None]) & (gj[None] <= right[:, None])  # (N, S_w)
    region = in_rows[:, :, None] & in_cols[:, None, :] & valid[:, None, None]  # (N, S_h, S_w)
    dy = (gi + 0.5) * cell_h  # (S_h,) cell centres
    dx = (gj + 0.5) * cell_w
    dist = (dy[None, :, None] - cy[:, None, None]) ** 2 + (
        dx[None, None, :] - cx[:, None, None]
    ) ** 2
    dist = torch.where(region, dist, torch.full_like(dist, float("inf")))
    best, idx = dist.reshape(n, -1).min(dim=0)  # (G,)
    return torch.where(torch.isfinite(best), idx, owner)
