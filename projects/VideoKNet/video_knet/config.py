"""Config keys of Video K-Net (Li et al., CVPR 2022, arXiv 2204.04656), all under
``MODEL.VIDEO_KNET``; defaults are the official VIS config's (lxtGH/Video-K-Net
``configs/video_knet_vis/_base_/models/knet_track_r50.py``)."""

from detectron2.config import CfgNode as CN

__all__ = ["add_video_knet_config"]


def add_video_knet_config(cfg):
    """Add Video K-Net's keys to a detectron2 config (in place). Call after
    ``vis_core.config.add_vis_config(cfg)`` (clip sampling, optimiser extras, ``TEST.VIS``)."""
    cfg.MODEL.VIDEO_KNET = CN()
    k = cfg.MODEL.VIDEO_KNET
    # ---- Architecture ----
    # Number of object classes K (40 on YouTube-VIS 2019/2021, 25 on OVIS); sigmoid scores.
    k.NUM_CLASSES = 40
    # FPN outputs the kernel head reads (P2-P5, strides 4-32).
    k.IN_FEATURES = ["p2", "p3", "p4", "p5"]
    # Kernels N (num_proposals).
    k.NUM_PROPOSALS = 100
    # Channels C of features and kernels (= MODEL.FPN.OUT_CHANNELS).
    k.HIDDEN_DIM = 256
    # Per-frame kernel update stages (roi_head) and tracker stages.
    k.NUM_STAGES = 3
    k.TRACKER_STAGES = 3
    # Tracker stages before this index keep one kernel per object for the clip and have a class
    # branch; from it on the kernels are per frame, without class (assign_stages; the class
    # comes from the stage before, whose assignment these stages reuse).
    k.TRACKER_ASSIGN_STAGES = 2
    # Attention heads over the kernels; FFN hidden width.
    k.NHEADS = 8
    k.DIM_FEEDFORWARD = 2048
    # Std of the initial kernels' normal init (kernel_init_std).
    k.KERNEL_INIT_STD = 1.0
    # Masks are binarised at this probability to gather the kernels' group features.
    k.HARD_MASK_THR = 0.5
    # Frames are padded to a multiple of this.
    k.SIZE_DIVISIBILITY = 32

    # ---- Matching (K-Net's costs on masks at stride 4; the tracker's on masks concatenated over
    # the clip's frames) ----
    k.COST_CLASS = 2.0
    k.COST_MASK = 1.0
    k.COST_DICE = 4.0

    # ---- Losses (each stage, weights 1) ----
    # Sigmoid focal class loss weight, alpha, gamma.
    k.CLASS_WEIGHT = 2.0
    k.FOCAL_ALPHA = 0.25
    k.FOCAL_GAMMA = 2.0
    # Mask binary cross-entropy and V-Net dice (eps on each sum of squares).
    k.MASK_WEIGHT = 1.0
    k.DICE_WEIGHT = 4.0
    k.DICE_EPS = 1e-3
    # The kernel head's semantic loss (official ``loss_rpn_seg``: sigmoid focal, alpha and gamma as
    # above, on its ``conv_seg`` logits at stride 4, every pixel of a matched object's mask labelled
    # with the object's class, the rest background, divided by the labelled pixels): its weight.
    k.SEG_WEIGHT = 1.0
    # Weight of each per-frame stage's and each tracker stage's losses.
    k.STAGE_LOSS_WEIGHTS = [1.0, 1.0, 1.0]
    k.TRACKER_STAGE_LOSS_WEIGHTS = [1.0, 1.0, 1.0]

    # ---- Inference ----
    # "tracker" (the official clip-level output: one kernel per object over the whole clip) or
    # "frame_linking" (the per-frame K-Net's last stage, its kernels linked frame to frame by
    # Hungarian matching on their cosine similarity; the baseline, same weights).
    k.INFERENCE_OUTPUT = "tracker"
    return cfg
