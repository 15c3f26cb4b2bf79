"""Config keys of TeViT (Yang et al., CVPR 2022, arXiv 2204.08412), all under ``MODEL.TEVIT``."""

from detectron2.config import CfgNode as CN

from vis_core.config import add_pvt_v2_config, add_query_roi_head_config

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
    # The query head's keys (vis_core.config.add_query_roi_head_config: NUM_CLASSES, IN_FEATURES,
    # HIDDEN_DIM, NUM_STAGES, ..., the matching costs and the loss weights) with the official
    # values; TeViT's own:
    add_query_roi_head_config(t)
    # Learned proposals (queries) N per frame.
    t.NUM_PROPOSALS = 100
    # Query interaction: "stqi" (the paper's spatiotemporal query interaction), "spatial"
    # (QueryInst, frames independent), "fused" (one MHSA over all T*N queries; Table 5); the other
    # modes of add_query_roi_head_config are not in the official checkpoints.
    t.INTERACTION = "stqi"
    return cfg
