"""Config keys of TeViT (Yang et al., CVPR 2022, arXiv 2204.08412), all under ``MODEL.TEVIT``."""

from detectron2.config import CfgNode as CN

from vis_core.config import add_pvt_v2_config

__all__ = ["add_tevit_config"]


def add_tevit_config(cfg):
    """Add TeViT's keys to a detectron2 config (in place); defaults are the official code's
    (``configs/tevit/tevit_msgshift.py`` / ``tevit_r50.py``).

    Call after ``vis_core.config.add_vis_config(cfg)``: clip sampling (SAMPLING_FRAME_NUM 5,
    SAMPLING_FRAME_MODE "key_random"), the optimiser extras and ``TEST.VIS`` (WINDOW_SIZE,
    MAX_TRACKS = the top-k (query, class) pairs kept, MASK_THRESHOLD) live there. The backbone is
    ``MODEL.BACKBONE.NAME`` (detectron2's ResNet + FPN, or vis_core's MsgShifT + FPN, whose
    ``MODEL.PVT_V2`` keys this adds too).
    """
    if "PVT_V2" not in cfg.MODEL:
        add_pvt_v2_config(cfg)
    cfg.MODEL.TEVIT = CN()
    t = cfg.MODEL.TEVIT
    # ---- Architecture ----
    # Number of object classes K (40 on YouTube-VIS 2019/2021, 25 on OVIS); sigmoid scores.
    t.NUM_CLASSES = 40
    # Backbone/FPN outputs the heads read, finest first (strides 4, 8, 16, 32: P2-P5).
    t.IN_FEATURES = ["p2", "p3", "p4", "p5"]
    # Learned proposals (queries) N per frame.
    t.NUM_PROPOSALS = 100
    # Channels C of queries, RoI features and heads.
    t.HIDDEN_DIM = 256
    # Refinement stages of the query head (boxes, classes, masks each stage).
    t.NUM_STAGES = 6
    # Attention heads of the query interaction.
    t.NHEADS = 8
    # Hidden width of each stage's FFN.
    t.DIM_FEEDFORWARD = 2048
    # Inner channels C_f of the dynamic convolutions (instance interaction, mask head).
    t.DYNAMIC_DIM = 64
    # (Linear, LN, ReLU) blocks of the class / box branches.
    t.NUM_CLS_FCS = 1
    t.NUM_REG_FCS = 3
    # Dropout of attention, dynamic conv and FFN.
    t.DROPOUT = 0.0
    # Query interaction: "stqi" (the paper's spatiotemporal query interaction: one MHSA + norm over
    # the queries of each frame, then over the frames of each query), "spatial" (QueryInst, frames
    # independent), "fused" (one MHSA over all T*N queries; Table 5), "ftsa" (separate temporal then
    # spatial MHSA, EfficientVIS-style; extra parameters, not in the official checkpoints).
    t.INTERACTION = "stqi"
    # RoIAlign output side S for the box stages and the mask head (masks are 2S x 2S).
    t.BOX_ROI_SIZE = 7
    t.MASK_ROI_SIZE = 14
    # RoIAlign sampling points per bin and axis.
    t.ROI_SAMPLING_RATIO = 2
    # Box side mapping to the finest FPN level's upper bound (mmdet finest_scale).
    t.ROI_FINEST_SCALE = 56.0
    # Level epsilon: "mmdet" (official) or "detectron2" (ROIPooler's own).
    t.ROI_LEVEL_MAPPING = "mmdet"
    # conv 3x3 + BN + ReLU blocks of the mask head.
    t.NUM_MASK_CONVS = 4
    # DeltaXYWH box deltas' normalisation (means, stds).
    t.BOX_DELTA_MEANS = [0.0, 0.0, 0.0, 0.0]
    t.BOX_DELTA_STDS = [0.5, 0.5, 1.0, 1.0]
    # Frames are padded to a multiple of this before the backbone.
    t.SIZE_DIVISIBILITY = 32

    # ---- Matching (clip-level Hungarian, costs averaged over a track's present frames) ----
    # Focal class cost (FocalLossCost weight).
    t.COST_CLASS = 2.0
    # L1 cost on normalised (x1, y1, x2, y2) boxes (BBoxL1Cost weight).
    t.COST_BOX_L1 = 5.0
    # -GIoU cost (IoUCost giou weight).
    t.COST_GIOU = 2.0

    # ---- Losses (per stage, normalised by the positive (query, frame) pairs) ----
    # Sigmoid focal class loss weight, alpha, gamma.
    t.CLASS_WEIGHT = 2.0
    t.FOCAL_ALPHA = 0.25
    t.FOCAL_GAMMA = 2.0
    # L1 loss on boxes divided by the frame's size.
    t.BOX_L1_WEIGHT = 5.0
    # GIoU loss weight.
    t.GIOU_WEIGHT = 2.0
    # V-Net dice mask loss weight and eps.
    t.MASK_WEIGHT = 8.0
    t.DICE_EPS = 1e-5
    # Weight of each stage's losses (one entry per stage).
    t.STAGE_LOSS_WEIGHTS = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    return cfg
