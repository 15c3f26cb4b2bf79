"""Config keys of EfficientVIS (Wu et al., CVPR 2022, arXiv 2203.01853), all under
``MODEL.EFFICIENTVIS``.

No code was published: values marked [paper] are from the paper's tables and equation, [summary]
from a third-party summary, [guess] ours (QueryInst / TeViT values where the head is theirs); see
``projects/EfficientVIS/README.md``.
"""

from detectron2.config import CfgNode as CN

__all__ = ["add_efficientvis_config"]


def add_efficientvis_config(cfg):
    """Add EfficientVIS' keys to a detectron2 config (in place).

    Call after ``vis_core.config.add_vis_config(cfg)``: the clip sampler (``INPUT.SAMPLING_FRAME_NUM``
    = CLIP_LENGTH x NUM_TRAIN_CLIPS consecutive frames, ``SAMPLING_FRAME_MODE`` "consecutive"), the
    optimiser extras and ``TEST.VIS`` (MAX_TRACKS, MASK_THRESHOLD) live there.
    """
    cfg.MODEL.EFFICIENTVIS = CN()
    e = cfg.MODEL.EFFICIENTVIS
    # ---- Architecture ----
    # Number of object classes K (40 on YouTube-VIS 2019/2021, 25 on OVIS); sigmoid scores.
    e.NUM_CLASSES = 40
    # Backbone/FPN outputs the heads read, finest first (P2-P5) [guess].
    e.IN_FEATURES = ["p2", "p3", "p4", "p5"]
    # Tracklets N: queries q_i (one embedding per frame) and proposals b_i (one box per frame)
    # [summary: 10].
    e.NUM_PROPOSALS = 10
    # Channels C of queries, RoI features and heads.
    e.HIDDEN_DIM = 256
    # Stages M of query-video interaction [summary: 6].
    e.NUM_STAGES = 6
    # Attention heads of the query interaction [guess].
    e.NHEADS = 8
    # Hidden width of each stage's FFN (QueryInst).
    e.DIM_FEEDFORWARD = 2048
    # Inner channels of the dynamic convolutions (QueryInst).
    e.DYNAMIC_DIM = 64
    # (Linear, LN, ReLU) blocks of the class / box branches (QueryInst).
    e.NUM_CLS_FCS = 1
    e.NUM_REG_FCS = 3
    # Dropout of attention, dynamic conv and FFN.
    e.DROPOUT = 0.0
    # Query self-attention, Table 3(a): "ftsa" (the paper's factorised temporo-spatial attention:
    # temporal MHSA over each tracklet's T embeddings, then spatial MHSA over the tracklets of each
    # frame, separate weights), "spatial", "temporal", "fused" (joint over all T*N), "stqi" (TeViT's).
    e.INTERACTION = "ftsa"
    # Temporal dynamic convolution (TDC) [paper eq.]; False = the still-image dynamic conv of
    # Table 3(b).
    e.TEMPORAL_DYNAMIC_CONV = True
    # TDC window t - r .. t + r: r [paper eq.: 1].
    e.TDC_RADIUS = 1
    # Time-disentangled tracklet queries (one embedding per frame) [paper]; True = time-shared
    # (one per tracklet, the output queries averaged over the clip's frames after each stage),
    # Table 3(f)'s baseline.
    e.TIME_SHARED_QUERIES = False
    # RoIAlign output side for the box stages and the mask head (masks are 2S x 2S; QueryInst).
    e.BOX_ROI_SIZE = 7
    e.MASK_ROI_SIZE = 14
    # RoIAlign sampling points per bin and axis.
    e.ROI_SAMPLING_RATIO = 2
    # Box side mapping to the finest FPN level's upper bound (mmdet finest_scale).
    e.ROI_FINEST_SCALE = 56.0
    # Level epsilon: "mmdet" or "detectron2" (ROIPooler's own).
    e.ROI_LEVEL_MAPPING = "mmdet"
    # conv 3x3 + BN + ReLU blocks of the mask head.
    e.NUM_MASK_CONVS = 4
    # DeltaXYWH box deltas' normalisation (means, stds).
    e.BOX_DELTA_MEANS = [0.0, 0.0, 0.0, 0.0]
    e.BOX_DELTA_STDS = [0.5, 0.5, 1.0, 1.0]
    # Frames are padded to a multiple of this before the backbone.
    e.SIZE_DIVISIBILITY = 32

    # ---- Clips and the hand-over between them ----
    # Frames T of a clip, in training and inference [paper: 36; 9 and 18 in Table 3(c)].
    e.CLIP_LENGTH = 36
    # Consecutive clips of one video in a training sample (INPUT.SAMPLING_FRAME_NUM must be
    # CLIP_LENGTH x this) [summary: 2].
    e.NUM_TRAIN_CLIPS = 2
    # Correspondence learning (Table 3(e)): each training clip after the first starts from the
    # previous clip's output (the hand-over) and keeps its assignment; False = every training
    # clip starts from the learned initial queries and is matched on its own.
    e.CORRESPONDENCE_LEARNING = True
    # Cut the gradient through the hand-over in training [guess: False, the hand-over is learnt].
    e.HANDOVER_DETACH = False
    # Proposals handed over: "last" (the previous clip's last-frame boxes in every frame) or
    # "learned" (the learned initial proposals) [guess: "last"].
    e.HANDOVER_BOXES = "last"
    # Inference across clips, Table 3(d): "e2e" (the hand-over: a tracklet keeps its query index,
    # no association) or "hand" (each clip from the learned initial queries, tracklets linked to
    # the previous clip's by Hungarian matching on the cosine similarity of their time-averaged
    # output queries).
    e.LINKING = "e2e"
    # "hand" linking: a pair below this cosine similarity starts a new track.
    e.LINK_THRESHOLD = 0.5

    # ---- Matching (clip-level Hungarian, costs averaged over a track's present frames) [guess:
    # QueryInst's / TeViT's] ----
    e.COST_CLASS = 2.0
    e.COST_BOX_L1 = 5.0
    e.COST_GIOU = 2.0

    # ---- Losses per stage, normalised by the positive (tracklet, frame) pairs [guess: TeViT's] ----
    # Sigmoid focal class loss weight, alpha, gamma.
    e.CLASS_WEIGHT = 2.0
    e.FOCAL_ALPHA = 0.25
    e.FOCAL_GAMMA = 2.0
    # L1 loss on boxes divided by the frame's size.
    e.BOX_L1_WEIGHT = 5.0
    # GIoU loss weight.
    e.GIOU_WEIGHT = 2.0
    # V-Net dice mask loss weight and eps.
    e.MASK_WEIGHT = 8.0
    e.DICE_EPS = 1e-5
    # Weight of each stage's losses (one entry per stage).
    e.STAGE_LOSS_WEIGHTS = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    return cfg
