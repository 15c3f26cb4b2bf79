"""Config keys of GMP-VIS (Qin et al., "A Graph Matching Perspective With Transformers on Video
Instance Segmentation", CVPR 2022), all under ``MODEL.GMP_VIS``.

The paper body is not available and the released code is a partial VisTR fork (see
``projects/GMP_VIS/README.md``): values marked [paper] come from the abstract, Fig. 2 and the QAP
equations, [code] from zyqin19/GMP-VIS, [guess] are ours (Deformable DETR's where the paper names
multi-head deformable attention).
"""

from detectron2.config import CfgNode as CN

from vis_core.config import add_pixel_decoder_config

__all__ = ["add_gmp_vis_config", "ASSOCIATIONS", "EDGE_TYPES"]

# Association of the instances of consecutive clips (MODEL.GMP_VIS.ASSOCIATION).
ASSOCIATIONS = ("qap", "hungarian")
# Edge weights of the two graphs (MODEL.GMP_VIS.EDGES).
EDGE_TYPES = ("geometry", "embedding")


def add_gmp_vis_config(cfg):
    """Add GMP-VIS's keys to a detectron2 config (in place).

    Call after ``vis_core.config.add_vis_config(cfg)`` (clip sampling, optimiser extras, TEST.VIS).
    """
    cfg.MODEL.GMP_VIS = CN()
    g = cfg.MODEL.GMP_VIS
    # ---- Architecture ----
    # Number of object classes K (40 on YouTube-VIS 2019/2021, 25 on OVIS).
    g.NUM_CLASSES = 40
    # Instance queries per frame N [code: 10 per frame]; query n of every frame of a clip is one
    # instance sequence (VisTR's instance-sequence matching).
    g.NUM_QUERIES = 10
    # Hidden channels C of the decoder and the GTA [guess: Deformable DETR's 256; code 384].
    g.HIDDEN_DIM = 256
    # Attention heads of the decoder and the GTA.
    g.NHEADS = 8
    # FFN width of the decoder and the GTA layers [guess: Deformable DETR's 1024].
    g.DIM_FEEDFORWARD = 1024
    # Deformable decoder layers [guess: 6].
    g.DEC_LAYERS = 6
    # Sampling points per head and level of the decoder's deformable cross-attention.
    g.DEC_N_POINTS = 4
    # Dropout of the decoder and the GTA [guess: Deformable DETR's 0.1].
    g.DROPOUT = 0.1
    # Global temporal aggregation (GTA) [paper]: self-attention + FFN layers over the T * N instance
    # embeddings of a clip after the decoder (0 = off, the ablation) [guess: 1 layer].
    g.GTA_LAYERS = 1
    # Channels of the node embeddings of the association [code: 384 -> 64 projection].
    g.EMBED_DIM = 64
    # Frames are padded to a multiple of this before the backbone.
    g.SIZE_DIVISIBILITY = 32
    # Deformable encoder over the backbone's multi-scale features and the stride-4 mask features
    # (vis_core.modeling.pixel_decoder: Mask2Former's, 3 levels res3-res5 [guess: Deformable DETR
    # has a 4th, stride-64 level]).
    add_pixel_decoder_config(g)
    g.PIXEL_DECODER.NORM = "GN"

    # ---- Clips ----
    # Frames T of an inference clip; the video runs clip by clip [paper: 36].
    g.CLIP_LENGTH = 36
    # Consecutive clips in a training sample: the association loss matches the instances of each
    # clip to those of the clip before (INPUT.SAMPLING_FRAME_NUM = CLIP_LENGTH x this in training).
    g.NUM_TRAIN_CLIPS = 2

    # ---- Matching and losses [code: VisTR's weights] ----
    # Class cross-entropy weight (and matching cost).
    g.CLASS_WEIGHT = 1.0
    # Class weight of "no object" in the cross-entropy.
    g.NO_OBJECT_WEIGHT = 0.1
    # Box L1 (normalised cx, cy, w, h) and GIoU loss weights (and matching costs).
    g.BOX_L1_WEIGHT = 5.0
    g.GIOU_WEIGHT = 2.0
    # Mask sigmoid-BCE and dice loss weights (and matching costs) [code: focal 1, dice 1].
    g.MASK_WEIGHT = 1.0
    g.DICE_WEIGHT = 1.0
    # Losses on the prediction of every decoder layer (deep supervision).
    g.DEEP_SUPERVISION = True
    # Points per frame of the mask losses and matching costs (PointRend sampling).
    g.TRAIN_NUM_POINTS = 12544
    g.OVERSAMPLE_RATIO = 3.0
    g.IMPORTANCE_SAMPLE_RATIO = 0.75
    # Weight of the association loss: class-balanced BCE between the relaxed QAP solution and the
    # true permutation of consecutive clips' instances [guess; code: computed, never added].
    g.MATCHING_WEIGHT = 1.0

    # ---- Association (graph matching) ----
    # "qap" [paper: Koopmans-Beckmann QAP, vis_core.matching.solve_qap] or "hungarian" (node
    # affinities only: the bipartite baseline).
    g.ASSOCIATION = "qap"
    # Edge weights A of each graph: "geometry" (exp(-d^2 / 2 sigma^2) of the distance between box
    # centres, normalised by the frame size: the relative layout) or "embedding" (cosine affinity
    # of the node embeddings, GMTracker-style) [guess].
    g.EDGES = "geometry"
    # sigma of the geometry edges (fraction of the frame size).
    g.EDGE_SIGMA = 0.2
    # Scale of the edge weights against the node affinities B (cosine similarities).
    g.EDGE_WEIGHT = 1.0
    # For graphs of unequal sizes, charge each node of the larger graph its expected share of the
    # matched edge energy, so that the KB objective compares the matched nodes' edges only instead
    # of preferring the nodes with the strongest edges (see GraphAssociation.solver_affinities)
    # [guess; False = the plain KB objective on padded graphs].
    g.SIZE_CORRECTION = True
    # Unrolled relaxed-QAP solver at inference (iterations, step) and in training, where few short
    # steps keep the solution inside the polytope so the loss has a gradient.
    g.QAP_ITERS = 30
    g.QAP_STEP = 3.0
    g.QAP_TRAIN_ITERS = 10
    g.QAP_TRAIN_STEP = 0.3
    # A proposal continues the track it is assigned to only if their node affinity (cosine) is at
    # least this; otherwise it starts a new track [guess].
    g.MATCH_THRESHOLD = 0.3
    # Instance sequences of a clip scoring below this (mean over the clip's frames of the best
    # class probability) are background: not associated, no track [guess].
    g.SCORE_THRESHOLD = 0.1
    # Momentum of a track's embedding: e <- m e + (1 - m) e_new [guess: 0.8].
    g.EMBED_MOMENTUM = 0.8
    # A track not continued for this many clips leaves the graph of active tracks.
    g.MAX_INACTIVE_CLIPS = 3
    return cfg
