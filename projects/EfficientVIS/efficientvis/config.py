"""Config keys of EfficientVIS (Wu et al., CVPR 2022, arXiv 2203.01853), all under
``MODEL.EFFICIENTVIS``.

No code was published: values marked [paper] are from the paper's tables and equation, [summary]
from a third-party summary, [guess] ours (QueryInst / TeViT values where the head is theirs); see
``projects/EfficientVIS/README.md``.
"""

from detectron2.config import CfgNode as CN

from vis_core.config import add_query_roi_head_config

__all__ = ["add_efficientvis_config"]


def add_efficientvis_config(cfg):
    """Add EfficientVIS' keys to a detectron2 config (in place).

    Call after ``vis_core.config.add_vis_config(cfg)``: the clip sampler (``INPUT.SAMPLING_FRAME_NUM``
    = CLIP_LENGTH x NUM_TRAIN_CLIPS consecutive frames, ``SAMPLING_FRAME_MODE`` "consecutive"), the
    optimiser extras and ``TEST.VIS`` (MAX_TRACKS, MASK_THRESHOLD) live there.
    """
    cfg.MODEL.EFFICIENTVIS = CN()
    e = cfg.MODEL.EFFICIENTVIS
    # The query head's keys (vis_core.config.add_query_roi_head_config: NUM_CLASSES, IN_FEATURES,
    # HIDDEN_DIM, NUM_STAGES (M) [summary: 6], NHEADS, DIM_FEEDFORWARD, DYNAMIC_DIM, RoI sizes, box
    # coding, the matching costs and the loss weights) with QueryInst's / TeViT's values [guess];
    # EfficientVIS' own:
    add_query_roi_head_config(e)
    # Tracklets N: queries q_i (one embedding per frame) and proposals b_i (one box per frame)
    # [summary: 10].
    e.NUM_PROPOSALS = 10
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

    return cfg
