"""Config keys of Mask2Former-VIS (Cheng et al., arXiv 2112.10764), all under ``MODEL.MASK2FORMER_VIS``."""

from detectron2.config import CfgNode as CN

from vis_core.config import add_pixel_decoder_config

__all__ = ["add_mask2former_vis_config"]


def add_mask2former_vis_config(cfg):
    """Add Mask2Former-VIS's keys to a detectron2 config (in place); defaults are the paper's.

    Call after ``vis_core.config.add_vis_config(cfg)``: clip sampling, the optimiser extras and
    ``TEST.VIS`` (WINDOW_SIZE, MAX_TRACKS = the top-k (query, class) pairs kept, MASK_THRESHOLD)
    live there.
    """
    cfg.MODEL.MASK2FORMER_VIS = CN()
    m = cfg.MODEL.MASK2FORMER_VIS
    # ---- Architecture ----
    # Number of object classes K (40 on YouTube-VIS 2019/2021, 25 on OVIS).
    m.NUM_CLASSES = 40
    # Video queries Q, each one instance over the whole clip (100; 200 for Swin-L).
    m.NUM_QUERIES = 100
    # Hidden channels C of the transformer decoder.
    m.HIDDEN_DIM = 256
    # Attention heads of the transformer decoder.
    m.NHEADS = 8
    # FFN width of the transformer decoder.
    m.DIM_FEEDFORWARD = 2048
    # Transformer decoder layers (9 = 3 rounds over 3 scales). The prediction from the learnable
    # queries comes on top: the official DEC_LAYERS = 10 counts it.
    m.DEC_LAYERS = 9
    # Pre-LayerNorm decoder layers (False: post-norm, as the paper).
    m.PRE_NORM = False
    # 1x1 input projection on the decoder's features even when their channels equal HIDDEN_DIM.
    m.ENFORCE_INPUT_PROJ = False
    # Masked attention (the paper's key component): each query's cross-attention reads only the
    # pixels of its mask predicted by the previous layer. False = standard cross-attention over the
    # whole clip, in training and inference (the paper's "w/o masked attention" ablation).
    m.MASKED_ATTENTION = True
    # Frames are padded to a multiple of this before the backbone.
    m.SIZE_DIVISIBILITY = 32

    # ---- Pixel decoder (multi-scale deformable attention, per frame): MODEL.MASK2FORMER_VIS.PIXEL_DECODER ----
    add_pixel_decoder_config(m)

    # ---- Matching and losses ----
    # Class loss weight (and matching cost), lambda_cls.
    m.CLASS_WEIGHT = 2.0
    # Mask sigmoid-BCE loss weight (and matching cost), lambda_ce.
    m.MASK_WEIGHT = 5.0
    # Dice loss weight (and matching cost), lambda_dice.
    m.DICE_WEIGHT = 5.0
    # Class weight of "no object" in the cross-entropy.
    m.NO_OBJECT_WEIGHT = 0.1
    # Losses on the prediction of every decoder layer (deep supervision).
    m.DEEP_SUPERVISION = True
    # Points per frame for the mask losses and matching costs (112 x 112).
    m.TRAIN_NUM_POINTS = 12544
    # PointRend importance sampling: candidates = OVERSAMPLE_RATIO * points ...
    m.OVERSAMPLE_RATIO = 3.0
    # ... of which this fraction is taken by uncertainty, the rest uniformly.
    m.IMPORTANCE_SAMPLE_RATIO = 0.75

    # ---- Inference (shared keys in TEST.VIS) ----
    # Windowed inference (TEST.VIS.WINDOW_SIZE > 0): the low-resolution mask logits of the windows
    # are kept on the host up to this many MiB and recomputed for the kept tracks beyond it.
    m.WINDOW_CACHE_MB = 1024
    return cfg
