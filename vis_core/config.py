"""Config keys every video project shares; each method adds its own under ``MODEL.<METHOD>``."""

import torch
from detectron2.config import CfgNode as CN

__all__ = [
    "add_pixel_decoder_config",
    "add_pvt_v2_config",
    "add_vis_config",
    "get_num_classes",
    "register_num_classes_key",
]

# META_ARCHITECTURE -> the config key of its class count, e.g. "VISOLO" -> "MODEL.VISOLO.NUM_CLASSES".
_NUM_CLASSES_KEYS = {}


def register_num_classes_key(meta_architecture: str, key: str) -> None:
    """Declare that the class count of ``meta_architecture`` (a META_ARCH_REGISTRY name) is the
    config key ``key``; every method's package calls this once, at import, so that the trainer and
    the evaluator compare it with the data set's ``thing_classes`` before they start."""
    known = _NUM_CLASSES_KEYS.setdefault(meta_architecture, key)
    if known != key:
        raise ValueError(
            f"register_num_classes_key: {meta_architecture!r} already declares {known!r} as its "
            f"class count, not {key!r}"
        )


def get_num_classes(cfg):
    """``(key, value)`` of the class count of ``cfg.MODEL.META_ARCHITECTURE``, or None where the
    method declares none (:func:`register_num_classes_key`)."""
    key = _NUM_CLASSES_KEYS.get(cfg.MODEL.META_ARCHITECTURE)
    if key is None:
        return None
    node = cfg
    for part in key.split("."):
        node = node[part]
    return key, int(node)


def add_vis_config(cfg):
    """Add the keys shared by all VIS projects to a detectron2 config (in place)."""
    # detectron2 defaults to "cuda"; run on the CPU where there is no GPU (a config or opts still win).
    cfg.MODEL.DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
    # Multi-process training: DDP looks for parameters without a gradient in each iteration; needed
    # where a config leaves modules unused (VISOLO with both TEMPORAL_AGGREGATION_* off), slower.
    cfg.MODEL.DDP_FIND_UNUSED_PARAMETERS = False
    # Keep the model's 4-d weights (and so its convolutions' outputs) in channels-last memory order
    # (VideoTrainer.build_model): the same function, faster convolutions on the CPU (VISOLO's quick
    # config: 0.41 vs 0.445 s a training step on 2 cores); off by default.
    cfg.MODEL.CHANNELS_LAST = False
    # ---- Clip sampling (training) ----
    # Frames per training clip (T).
    cfg.INPUT.SAMPLING_FRAME_NUM = 2
    # Frames of a clip are drawn within +-SAMPLING_FRAME_RANGE of a random reference frame.
    cfg.INPUT.SAMPLING_FRAME_RANGE = 20
    # Shuffle the order of the sampled frames (otherwise kept in temporal order).
    cfg.INPUT.SAMPLING_FRAME_SHUFFLE = False
    # How a clip is drawn: "range" (a reference frame and others within SAMPLING_FRAME_RANGE, sorted
    # unless SAMPLING_FRAME_SHUFFLE) or "key_random" (TeViT's official sampler: a key frame with
    # objects first, then SAMPLING_FRAME_NUM - 1 other frames with objects from anywhere in the
    # video, in random order; a video with too few such frames is skipped for another one) or
    # "consecutive" (EfficientVIS: SAMPLING_FRAME_NUM consecutive frames from a random start).
    cfg.INPUT.SAMPLING_FRAME_MODE = "range"
    # A clip in which no object is visible: 0 = train on it as drawn (every query / cell towards "no
    # object", as the official Mask2Former-VIS and VISOLO code); N > 0 = draw it anew up to N times,
    # then skip the video.
    cfg.INPUT.SAMPLING_MAX_TRIES = 0
    # Augmentations applied identically to all frames of a clip: any of "flip", "crop" (INPUT.CROP), "resize".
    cfg.INPUT.AUGMENTATIONS = ["resize", "flip"]
    # Augmentations sampled anew for every frame, after the clip's: any of "rotation", "crop" (in that
    # order). VISOLO's official training rotates and crops each frame of a clip on its own.
    cfg.INPUT.PER_FRAME_AUGMENTATIONS = []
    # "rotation": angle drawn uniformly in [-a, a] degrees; the frame keeps its size (corners zero).
    cfg.INPUT.PER_FRAME_ROTATION_ANGLE = 15.0
    # "crop": a random window of this (H, W) in pixels (smaller frames are cropped to their own size).
    cfg.INPUT.PER_FRAME_CROP_SIZE = (352, 624)

    # Test-time resize: () = ResizeShortestEdge to INPUT.MIN_SIZE_TEST / MAX_SIZE_TEST (aspect kept);
    # (H, W) = every frame resized to exactly H x W, aspect not kept (VISOLO's official test resize).
    cfg.INPUT.TEST_FIXED_SIZE = ()

    # ---- Data sets ----
    # One sampling ratio per DATASETS.TRAIN set: each training sample comes from set i with
    # probability ratio_i / sum (e.g. [0.75, 0.25] for YouTube-VIS + COCO pseudo-videos); [] = the
    # sets concatenated.
    cfg.DATASETS.DATASET_RATIO = []
    # Your own YouTube-VIS-format sets, registered when the config is built: [[name, json_file, image_root], ...].
    cfg.DATASETS.YTVIS_JSON = []
    # Test-time data loading workers (training uses DATALOADER.NUM_WORKERS).
    cfg.DATALOADER.TEST_NUM_WORKERS = 0

    # ---- Inference over a video ----
    cfg.TEST.VIS = CN()
    # Offline methods: frames per inference window (0 = the whole video in one pass).
    cfg.TEST.VIS.WINDOW_SIZE = 0
    # Tracks kept per video in the output (top scoring).
    cfg.TEST.VIS.MAX_TRACKS = 100
    # Binarisation threshold for output mask probabilities.
    cfg.TEST.VIS.MASK_THRESHOLD = 0.5

    # ---- Solver extras ----
    # "SGD" or "ADAMW".
    cfg.SOLVER.OPTIMIZER = "ADAMW"
    # Learning-rate multiplier of the backbone's parameters.
    cfg.SOLVER.BACKBONE_MULTIPLIER = 0.1
    # The module (path in the model) whose parameters get BACKBONE_MULTIPLIER: "backbone" (with
    # detectron2's FPN inside it), or "backbone.bottom_up" to leave the FPN at the base rate, as
    # mmdet's ``custom_keys={'backbone': ...}`` does (TeViT: the FPN is mmdet's neck).
    cfg.SOLVER.BACKBONE_MULTIPLIER_MODULE = "backbone"
    # Weight decay of embedding parameters (query embeddings, level embeddings).
    cfg.SOLVER.WEIGHT_DECAY_EMBED = 0.0
    # Stop training when a loss term becomes NaN or infinite.
    cfg.SOLVER.CHECK_FINITE_LOSSES = True
    return cfg


def add_pvt_v2_config(cfg):
    """Add MODEL.PVT_V2.* (in place): the PVTv2 backbone of vis_core.modeling.backbone, defaults =
    PVTv2-B1 without messenger tokens. Pick it with MODEL.BACKBONE.NAME "build_pvt_v2_backbone", or
    "build_pvt_v2_fpn_backbone" with detectron2's MODEL.FPN.* (IN_FEATURES res2..res5)."""
    cfg.MODEL.PVT_V2 = CN()
    # Channels of each stage's tokens (C_s); the number of entries is the number of stages.
    cfg.MODEL.PVT_V2.EMBED_DIMS = [64, 128, 320, 512]
    # Attention heads per stage.
    cfg.MODEL.PVT_V2.NUM_HEADS = [1, 2, 5, 8]
    # Encoder layers per stage.
    cfg.MODEL.PVT_V2.DEPTHS = [2, 2, 2, 2]
    # Spatial-reduction ratio of the attention's keys and values per stage (R_s; 1 = none).
    cfg.MODEL.PVT_V2.SR_RATIOS = [8, 4, 2, 1]
    # FFN hidden channels / C_s per stage (E_s).
    cfg.MODEL.PVT_V2.MLP_RATIOS = [8, 8, 4, 4]
    # Kernel and stride of each stage's overlapping patch embedding (padding = kernel // 2).
    cfg.MODEL.PVT_V2.PATCH_SIZES = [7, 3, 3, 3]
    cfg.MODEL.PVT_V2.STRIDES = [4, 2, 2, 2]
    # Bias of the attention's q/k/v and output projections.
    cfg.MODEL.PVT_V2.QKV_BIAS = True
    # Dropout after the attention and in the FFN; dropout of the attention weights.
    cfg.MODEL.PVT_V2.DROP_RATE = 0.0
    cfg.MODEL.PVT_V2.ATTN_DROP_RATE = 0.0
    # Stochastic depth, rising linearly from 0 at the first layer to this at the last.
    cfg.MODEL.PVT_V2.DROP_PATH_RATE = 0.1
    # Epsilon of every LayerNorm.
    cfg.MODEL.PVT_V2.NORM_EPS = 1e-6
    # Messenger tokens per frame (TeViT's MsgShifT, M; 32 in the paper); 0 = plain PVTv2.
    cfg.MODEL.PVT_V2.NUM_MESSENGER_TOKENS = 0
    # Temporal roll (frames) of each group of messenger tokens (M / len groups of whole tokens) after
    # even layers of a stage; odd layers roll by the negated strides.
    cfg.MODEL.PVT_V2.SHIFT_STRIDES = [1, -1, 2, -2]
    # Stage outputs, strides 4, 8, 16, 32.
    cfg.MODEL.PVT_V2.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    return cfg


def add_query_roi_head_config(node):
    """Add the keys of vis_core's query RoI head (``vis_core.modeling.query_roi_head``, built by
    ``build_query_roi_head``) to a method's config node (in place), with QueryInst's defaults as
    TeViT's official code sets them; the method sets its own values after this (TeViT: 100
    proposals, "stqi"; EfficientVIS: 10 tracklets, "ftsa")."""
    # ---- Architecture ----
    # Number of object classes K (40 on YouTube-VIS 2019/2021, 25 on OVIS); sigmoid scores.
    node.NUM_CLASSES = 40
    # Backbone/FPN outputs the heads read, finest first (strides 4, 8, 16, 32: P2-P5).
    node.IN_FEATURES = ["p2", "p3", "p4", "p5"]
    # Learned proposals (queries) N per frame.
    node.NUM_PROPOSALS = 100
    # Channels C of queries, RoI features and heads.
    node.HIDDEN_DIM = 256
    # Refinement stages of the query head (boxes, classes, masks each stage).
    node.NUM_STAGES = 6
    # Attention heads of the query interaction.
    node.NHEADS = 8
    # Hidden width of each stage's FFN.
    node.DIM_FEEDFORWARD = 2048
    # Inner channels C_f of the dynamic convolutions (instance interaction, mask head).
    node.DYNAMIC_DIM = 64
    # (Linear, LN, ReLU) blocks of the class / box branches.
    node.NUM_CLS_FCS = 1
    node.NUM_REG_FCS = 3
    # Dropout of attention, dynamic conv and FFN.
    node.DROPOUT = 0.0
    # Query interaction (vis_core.modeling.query_inst.INTERACTION_MODES): "spatial" (QueryInst:
    # MHSA over the queries of each frame), "stqi" (TeViT: the same MHSA + norm over the queries of
    # each frame, then over the frames of each query), "fused" (one MHSA over all T*N queries),
    # "temporal" (over the frames of each query only), "ftsa" (EfficientVIS: separate temporal then
    # spatial MHSA, with their own weights).
    node.INTERACTION = "spatial"
    # RoIAlign output side S for the box stages and the mask head (masks are 2S x 2S).
    node.BOX_ROI_SIZE = 7
    node.MASK_ROI_SIZE = 14
    # RoIAlign sampling points per bin and axis.
    node.ROI_SAMPLING_RATIO = 2
    # Box side mapping to the finest FPN level's upper bound (mmdet finest_scale).
    node.ROI_FINEST_SCALE = 56.0
    # Level epsilon: "mmdet" (the official QueryInst/TeViT code) or "detectron2" (ROIPooler's own).
    node.ROI_LEVEL_MAPPING = "mmdet"
    # conv 3x3 + BN + ReLU blocks of the mask head.
    node.NUM_MASK_CONVS = 4
    # DeltaXYWH box deltas' normalisation (means, stds).
    node.BOX_DELTA_MEANS = [0.0, 0.0, 0.0, 0.0]
    node.BOX_DELTA_STDS = [0.5, 0.5, 1.0, 1.0]
    # Frames are padded to a multiple of this before the backbone.
    node.SIZE_DIVISIBILITY = 32

    # ---- Matching (clip-level Hungarian, costs averaged over a track's present frames) ----
    # Focal class cost (FocalLossCost weight).
    node.COST_CLASS = 2.0
    # L1 cost on normalised (x1, y1, x2, y2) boxes (BBoxL1Cost weight).
    node.COST_BOX_L1 = 5.0
    # -GIoU cost (IoUCost giou weight).
    node.COST_GIOU = 2.0

    # ---- Losses (per stage, normalised by the positive (query, frame) pairs) ----
    # Sigmoid focal class loss weight, alpha, gamma.
    node.CLASS_WEIGHT = 2.0
    node.FOCAL_ALPHA = 0.25
    node.FOCAL_GAMMA = 2.0
    # L1 loss on boxes divided by the frame's size.
    node.BOX_L1_WEIGHT = 5.0
    # GIoU loss weight.
    node.GIOU_WEIGHT = 2.0
    # V-Net dice mask loss weight and eps.
    node.MASK_WEIGHT = 8.0
    node.DICE_EPS = 1e-5
    # Weight of each stage's losses (one entry per stage).
    node.STAGE_LOSS_WEIGHTS = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    return node


def add_pixel_decoder_config(node):
    """Add ``node.PIXEL_DECODER``: the keys of Mask2Former's multi-scale deformable-attention pixel
    decoder (``vis_core.modeling.pixel_decoder``, built by ``build_pixel_decoder``), with the
    official Mask2Former defaults (Mask2Former-VIS; GMP-VIS's deformable encoder)."""
    node.PIXEL_DECODER = CN()
    # Backbone features read by the pixel decoder (finest first).
    node.PIXEL_DECODER.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    # Features the deformable-attention encoder reads (strides 8, 16, 32).
    node.PIXEL_DECODER.TRANSFORMER_IN_FEATURES = ["res3", "res4", "res5"]
    # Channels of the encoder and FPN convs.
    node.PIXEL_DECODER.CONVS_DIM = 256
    # Channels of the per-pixel mask features.
    node.PIXEL_DECODER.MASK_DIM = 256
    # Normalisation of the FPN convs ("GN"; "" for none).
    node.PIXEL_DECODER.NORM = "GN"
    # Stride of the mask features.
    node.PIXEL_DECODER.COMMON_STRIDE = 4
    # Deformable-attention encoder layers.
    node.PIXEL_DECODER.ENC_LAYERS = 6
    # Encoder attention heads.
    node.PIXEL_DECODER.ENC_NHEADS = 8
    # Encoder FFN width (1024, fixed in the official code).
    node.PIXEL_DECODER.ENC_DIM_FEEDFORWARD = 1024
    # Sampling points per head and level of the deformable attention.
    node.PIXEL_DECODER.ENC_N_POINTS = 4
    # Encoder dropout.
    node.PIXEL_DECODER.DROPOUT = 0.0
    # Deformable attention implementation: "auto" (CUDA op where built, else the PyTorch twin),
    # "cuda" or "pytorch".
    node.PIXEL_DECODER.DEFORM_ATTN_IMPL = "auto"
    return node
