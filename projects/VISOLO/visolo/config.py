"""Config keys of VISOLO (Han et al., CVPR 2022, arXiv 2112.04177), all under ``MODEL.VISOLO``."""

from detectron2.config import CfgNode as CN

__all__ = ["add_visolo_config"]


def add_visolo_config(cfg):
    """Add VISOLO's keys to a detectron2 config (in place); defaults are the paper's/official code's.

    Call after ``vis_core.config.add_vis_config(cfg)``; shared keys (clip sampling, solver extras,
    TEST.VIS) live there.
    """
    cfg.MODEL.VISOLO = CN()
    v = cfg.MODEL.VISOLO
    # ---- Architecture ----
    # Number of object classes (C in the paper; 40 on YouTube-VIS 2019/2021, 25 on OVIS).
    v.NUM_CLASSES = 40
    # Backbone features used, finest first: res2 (/4), res3 (/8), res4 (/16); no res5, no FPN.
    v.IN_FEATURES = ["res2", "res3", "res4"]
    # SOLO grid (S_h, S_w); 12 x 21 for 352 x 624 inputs.
    v.GRID_NUM = [12, 21]
    # Channels of the grid features and of the mask feature (E in the paper).
    v.HIDDEN_DIM = 256
    # Channels of the query/reference embeddings whose inner product is the grid similarity Sim.
    v.TRACK_DIM = 128
    # Normalisation of the grid branches ("GN" as in the official code, "" for none).
    v.NORM = "GN"
    # Prior probability of the category logits' bias at initialisation (0 = zero bias, as the
    # official code; SOLO's focal-loss prior is 0.01).
    v.CATEGORY_PRIOR_PROB = 0.0
    # Images are padded to a multiple of this before the backbone (at least res4's stride, 16, which
    # leaves the paper's 352x624 unpadded as the official code, which never pads).
    v.SIZE_DIVISIBILITY = 16

    # ---- Modules (paper Table 3 ablations) ----
    # Score reweighting P = Cat ⊙ AVG(Sim~_1, Sim~_2) at inference (SR).
    v.SCORE_REWEIGHTING = True
    # Reference frames of Sim~_1, Sim~_2 when scoring frame t: "official" = t-1 and the newest long-term
    # memory frame (index a multiple of MEMORY.INTERVAL) before t-1, the official code's
    # memory[-2] / memory[-3]; "recent" = t-1 and t-2, the two newest memory entries.
    v.REWEIGHTING_FRAMES = "official"
    # Temporal aggregation of the category feature from the memory (TA, category).
    v.TEMPORAL_AGGREGATION_CATEGORY = True
    # Temporal aggregation of the mask (kernel) feature from the memory (TA, mask).
    v.TEMPORAL_AGGREGATION_MASK = True

    # ---- Memory (inference) ----
    v.MEMORY = CN()
    # Every MEMORY.INTERVAL-th frame is kept as a long-term memory entry ("every 5 frames").
    v.MEMORY.INTERVAL = 5
    # The newest frames always kept in memory (short-term entries).
    v.MEMORY.NUM_RECENT = 2
    # Cap on long-term entries, oldest dropped first (0 = unbounded, as the official code).
    v.MEMORY.MAX_LONG_TERM = 20

    # ---- Training targets and losses ----
    # Centre-region scale: an instance owns the cells within eps * (mask height, width) of its centre.
    v.SAMPLING_EPS = 0.2
    # How an object's extent (for the centre region) is measured: "mask" = its mask's height and width
    # (the paper, SOLO); "official" = from the image corner, i.e. (max row + 1, max column + 1), as
    # the official code computes it (its minimum runs over background pixels too).
    v.CENTER_REGION = "mask"
    # Focal loss alpha (category and tracking losses).
    v.FOCAL_ALPHA = 0.25
    # Focal loss gamma (category and tracking losses).
    v.FOCAL_GAMMA = 2.0
    # Weight of the category (focal) loss.
    v.CATEGORY_WEIGHT = 1.0
    # Weight of the dice mask loss (lambda_mask = 3).
    v.MASK_WEIGHT = 3.0
    # Weight of the tracking loss on the grid similarity.
    v.TRACKING_WEIGHT = 1.0
    # Epsilon of the dice loss denominator.
    v.DICE_EPS = 1e-7

    # ---- Inference ----
    # Cells whose (reweighted) best class score is below this are dropped.
    v.SCORE_THR = 0.1
    # Mask probability threshold of the per-frame masks.
    v.MASK_THR = 0.5
    # Cells kept before matrix NMS (top by score).
    v.NMS_PRE = 500
    # Matrix NMS kernel: "gaussian" or "linear".
    v.NMS_KERNEL = "gaussian"
    # Matrix NMS gaussian sigma.
    v.NMS_SIGMA = 2.0
    # Instances whose score after matrix NMS is below this are dropped (UPDATE_THR).
    v.UPDATE_THR = 0.05
    # Instances kept per frame after matrix NMS (top by score).
    v.MAX_PER_FRAME = 100
    # A mask lying more than this fraction inside a higher-scored mask of the frame is dropped.
    v.OVERLAP_THR = 0.5
    # Minimum sigmoid grid similarity to link an instance to a previous one.
    v.TRACKING_THR = 0.1
    # Frames whose unmatched ("lost") instances are kept for re-identification (0 = unbounded).
    v.LOST_BANK_SIZE = 50
    return cfg
