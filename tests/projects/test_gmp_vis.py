"""GMP-VIS project: configs, the graph association (a planted case QAP solves and Hungarian on node
affinities misses, gradients through the relaxation, the tracker), two-clip training with the
association loss (ground truth and none), learning, clip-by-clip inference and its video output."""

import os

import pytest
import torch
from detectron2.modeling import build_model
from gmp_vis import GraphAssociation, Tracker, add_gmp_vis_config

from tests.projects.common import (
    decode_tracks,
    make_clip,
    make_video,
    project_cfg,
    project_config_names,
    project_root,
    seeded_model,
)
from vis_core.config import get_num_classes

ROOT = project_root("GMP_VIS")
CONFIG_NAMES = project_config_names(ROOT)
QUICK = "synthvis_quick/GMP_VIS_R18.yaml"
TINY = [
    "MODEL.GMP_VIS.NUM_CLASSES", "3",
    "MODEL.GMP_VIS.NUM_QUERIES", "4",
    "MODEL.GMP_VIS.HIDDEN_DIM", "32",
    "MODEL.GMP_VIS.NHEADS", "2",
    "MODEL.GMP_VIS.DIM_FEEDFORWARD", "64",
    "MODEL.GMP_VIS.DEC_LAYERS", "2",
    "MODEL.GMP_VIS.EMBED_DIM", "8",
    "MODEL.GMP_VIS.TRAIN_NUM_POINTS", "64",
    "MODEL.GMP_VIS.PIXEL_DECODER.CONVS_DIM", "32",
    "MODEL.GMP_VIS.PIXEL_DECODER.MASK_DIM", "32",
    "MODEL.GMP_VIS.PIXEL_DECODER.ENC_DIM_FEEDFORWARD", "64",
    "MODEL.GMP_VIS.CLIP_LENGTH", "3",
    "INPUT.SAMPLING_FRAME_NUM", "6",
]  # fmt: skip


def make_cfg(config=QUICK, opts=()):
    return project_cfg(ROOT, add_gmp_vis_config, config, opts)


def tiny_model(opts=(), seed=0):
    return seeded_model(make_cfg(opts=TINY + list(opts)), seed)


# ---------------------------------------------------------------- configs
@pytest.mark.parametrize("config", CONFIG_NAMES)
def test_every_config_loads_and_builds(config):
    cfg = make_cfg(config)
    model = build_model(cfg)
    assert type(model).__name__ == "GMPVIS"
    assert get_num_classes(cfg) == ("MODEL.GMP_VIS.NUM_CLASSES", model.num_classes)
    assert len(model.decoder.layers) == cfg.MODEL.GMP_VIS.DEC_LAYERS
    assert cfg.INPUT.SAMPLING_FRAME_NUM % model.num_train_clips == 0


def test_base_config_has_the_chosen_values():
    cfg = make_cfg("youtubevis_2019/GMP_VIS_R50.yaml")
    g = cfg.MODEL.GMP_VIS
    assert (g.NUM_QUERIES, g.CLIP_LENGTH, g.ASSOCIATION, g.EDGES) == (10, 36, "qap", "geometry")
    assert (g.CLASS_WEIGHT, g.BOX_L1_WEIGHT, g.GIOU_WEIGHT, g.NO_OBJECT_WEIGHT) == (1, 5, 2, 0.1)
    assert cfg.SOLVER.BASE_LR == 1e-4 and cfg.SOLVER.CLIP_GRADIENTS.CLIP_VALUE == 0.1
    model = build_model(cfg)
    assert len(model.decoder.gta_attn) == 1 and model.decoder.num_levels == 3


def test_bad_configs_fail_clearly():
    with pytest.raises(ValueError, match="SAMPLING_FRAME_NUM"):
        build_model(make_cfg(opts=TINY + ["INPUT.SAMPLING_FRAME_NUM", "5"]))
    with pytest.raises(ValueError, match="ASSOCIATION"):
        build_model(make_cfg(opts=TINY + ["MODEL.GMP_VIS.ASSOCIATION", "greedy"]))
    with pytest.raises(ValueError, match="EDGES"):
        build_model(make_cfg(opts=TINY + ["MODEL.GMP_VIS.EDGES", "iou"]))
    with pytest.raises(ValueError, match="CONVS_DIM"):
        build_model(make_cfg(opts=TINY + ["MODEL.GMP_VIS.HIDDEN_DIM", "64"]))


# ------------------------------------------------------------- association
def _planted():
    """Four instances: 0 and 1 are look-alike twins whose noisy embeddings each resemble the other
    twin's track a little more; 2 and 3 are distinct. Tracks are listed in another order; the
    layout (box centres) moved little."""
    e = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    cur = e.clone()
    cur[0, 1], cur[1, 2] = 0.05, 0.05  # twin 0 leans towards ... see the track embeddings
    centres = torch.tensor([[0.2, 0.2], [0.8, 0.8], [0.25, 0.3], [0.7, 0.9]])
    order = torch.tensor([2, 0, 3, 1])  # track j is instance order[j]
    tracks = e[order].clone()
    tracks[1, 2], tracks[3, 1] = 0.06, 0.06  # twin 0's track leans like twin 1 and vice versa
    return cur, tracks, centres + 0.02, centres[order], order


def test_qap_recovers_the_twins_that_hungarian_on_node_affinities_swaps():
    cur, tracks, c_cur, c_tracks, order = _planted()
    truth = torch.argsort(order)  # instance i -> track truth[i]
    qap = GraphAssociation(mode="qap", edges="geometry", match_threshold=-1.0)
    hungarian = GraphAssociation(mode="hungarian", edges="geometry", match_threshold=-1.0)
    perm_q, B = qap.assign(cur, tracks, c_cur, c_tracks)
    perm_h, _ = hungarian.assign(cur, tracks, c_cur, c_tracks)
    assert perm_q.tolist() == truth.tolist()
    assert perm_h[:2].tolist() == truth[[1, 0]].tolist()  # the twins swapped
    assert B[0, truth[1]] > B[0, truth[0]]  # their node affinities do prefer the swap
    # the threshold: a weak match is no match
    strict = GraphAssociation(mode="qap", edges="geometry", match_threshold=0.999)
    perm_s, _ = strict.assign(cur, tracks, c_cur, c_tracks)
    assert (perm_s[:2] == -1).all() and (perm_s[2:] == truth[2:]).all()


@pytest.mark.parametrize("edges", ["geometry", "embedding"])
def test_gradients_flow_through_the_relaxation(edges):
    from vis_core.matching import permutation_bce_loss

    g = torch.Generator().manual_seed(0)
    e1 = torch.randn(4, 8, generator=g, requires_grad=True)
    e2 = torch.randn(3, 8, generator=g, requires_grad=True)
    c1, c2 = torch.rand(4, 2, generator=g), torch.rand(3, 2, generator=g)
    soft = GraphAssociation(edges=edges).soft_assignment(e1, e2, c1, c2)
    assert (
        soft.shape == (4, 3) and 0.0 < float(soft.min().detach()) < float(soft.max().detach()) < 1
    )
    truth = torch.zeros(4, 3)
    truth[[0, 1, 3], [2, 0, 1]] = 1.0
    permutation_bce_loss(soft, truth).backward()
    assert e1.grad.abs().sum() > 0 and e2.grad.abs().sum() > 0


def test_tracker_continues_starts_and_retires_tracks():
    tracker = Tracker(GraphAssociation(match_threshold=0.5), momentum=0.8, max_inactive=1)
    e = torch.eye(3)
    c = torch.tensor([[0.1, 0.1], [0.5, 0.5], [0.9, 0.9]])
    assert tracker.update(e[:2], c[:2]) == [0, 1]
    assert tracker.update(e[[1, 0]], c[[1, 0]]) == [1, 0]  # same objects, other order
    assert tracker.update(e[2:], c[2:]) == [2]  # unlike every track: a new one
    assert tracker.update(e[:1], c[:1]) == [0]  # unseen for 1 step: still active
    tracker.update(e[2:], c[2:])
    tracker.update(e[2:], c[2:])
    assert tracker.update(e[1:2], c[1:2]) == [3]  # track 1 unseen for 4 steps: retired
    with pytest.raises(ValueError, match="centres"):
        tracker.update(e[:2], c[:1])


# ---------------------------------------------------------------- training
def _two_clip_samples():
    # clip 0 = frames 0-2 (tracks 0, 1), clip 1 = frames 3-5 (tracks 0, 2): track 1 leaves,
    # track 2 enters
    absent = [(1, f) for f in (3, 4, 5)] + [(2, f) for f in (0, 1, 2)]
    return [make_clip(t=6, n=3, seed=0, absent=absent), make_clip(t=6, n=0, seed=1)]


def test_training_step_with_and_without_ground_truth_reaches_every_part():
    model = tiny_model()
    model.train()
    losses = model(_two_clip_samples())
    names = ("loss_ce", "loss_mask", "loss_dice", "loss_bbox", "loss_giou")
    assert set(losses) == set(names) | {f"{k}_0" for k in names} | {"loss_match"}
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    sum(losses.values()).backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    for name in (
        "decoder.query_embed.weight",
        "decoder.layers.0.cross_attn.sampling_offsets.weight",
        "decoder.gta_attn.0.self_attn.in_proj_weight",
        "decoder.node_embed.weight",
        "decoder.bbox_embed.layers.2.weight",
        "pixel_decoder.transformer.encoder.layers.0.self_attn.value_proj.weight",
        "pixel_decoder.mask_features.weight",
        "backbone.stem.conv1.weight",
    ):
        assert grads[name] is not None and grads[name].abs().sum() > 0, name
    assert all(torch.isfinite(g).all() for g in grads.values() if g is not None)
    # the association loss alone trains the node embeddings
    model.zero_grad()
    model(_two_clip_samples())["loss_match"].backward()
    assert model.decoder.node_embed.weight.grad.abs().sum() > 0


def test_the_association_loss_compares_with_the_true_permutation():
    model = tiny_model()
    model.train()
    calls = []
    soft_assignment = model.association.soft_assignment

    def spy(e1, e2, c1, c2):
        soft = soft_assignment(e1, e2, c1, c2)
        calls.append(soft)
        return soft

    model.association.soft_assignment = spy
    criterion_forward = model.criterion.forward

    def criterion_spy(*args, **kwargs):
        result = criterion_forward(*args, **kwargs)
        calls.append(result[1])
        return result

    model.criterion.forward = criterion_spy
    from vis_core.matching import permutation_bce_loss

    losses = model(_two_clip_samples()[:1])
    indices, soft = calls  # one pair of clips
    assert soft.shape == (2, 2)  # clip 1's tracks (0, 2) against clip 0's (0, 1)
    ids1 = torch.tensor([0, 2])[indices[1][1]]  # sample track of each row (query order)
    ids0 = torch.tensor([0, 1])[indices[0][1]]
    truth = (ids1[:, None] == ids0[None]).float()
    assert truth.sum() == 1  # only track 0 is in both clips
    torch.testing.assert_close(losses["loss_match"], permutation_bce_loss(soft, truth))
    model.matching_weight = 0.0
    assert "loss_match" not in model(_two_clip_samples()[:1])


def test_a_few_steps_lower_the_loss():
    model = tiny_model(seed=1)
    model.train()
    samples = _two_clip_samples()[:1]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    history = []
    for _ in range(12):
        loss = sum(model(samples).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(float(loss.detach()))
    assert history[-1] < 0.8 * history[0], history


# --------------------------------------------------------------- inference
def _trained_looking(model):
    """Random but confident class scores, so that sequences pass the score threshold."""
    model.eval()
    with torch.no_grad():
        model.decoder.class_embed.bias.normal_(0.0, 2.0)
        model.decoder.class_embed.bias[-1] = -5.0
    return model


def test_clip_by_clip_inference_equals_the_clips_associated_by_hand():
    model = _trained_looking(tiny_model())
    model.max_tracks = 100
    video = make_video(t=8, out=(64, 96))  # clips of 3, 3, 2 frames
    with torch.no_grad():
        result = model([video])[0]
        tracker = Tracker(model.association, model.embed_momentum, model.max_inactive_clips)
        tracks = {}
        for s, e in ((0, 3), (3, 6), (6, 8)):
            images, out = model.run_clip(video["image"][s:e])
            probs = out["pred_frame_logits"][0].softmax(-1)[..., :-1]
            best, cls = probs.max(-1)
            keep = (best.mean(1) >= model.score_threshold).nonzero()[:, 0]
            boxes = out["pred_boxes"][0, keep]
            ids = tracker.update(out["pred_embeds"][0, keep], boxes[:, 0, :2], boxes[:, -1, :2])
            for i, k in enumerate(ids):
                t = tracks.setdefault(k, {"sum": 0.0, "n": 0, "votes": torch.zeros(3)})
                t["sum"] += float(best[keep[i]].sum())
                t["n"] += e - s
                t["votes"] += torch.bincount(cls[keep[i]], minlength=3).float()
    assert len(tracks) >= 4  # the 4 sequences of clip 0 at least
    scores = torch.tensor([tracks[k]["sum"] / tracks[k]["n"] for k in sorted(tracks)])
    classes = torch.stack([tracks[k]["votes"] for k in sorted(tracks)]).argmax(-1)
    order = scores.argsort(descending=True)
    torch.testing.assert_close(result["pred_scores"], scores[order])
    assert result["pred_classes"].tolist() == classes[order].tolist()
    masks = decode_tracks(result["pred_mask_rles"], 8, 64, 96)
    assert masks.shape == (len(tracks), 8, 64, 96)


def test_video_output_association_switch_and_empty_results():
    model = _trained_looking(tiny_model())
    video = make_video(t=7, out=(64, 96))
    with torch.no_grad():
        out = model([video])[0]
        assert 0 < len(out["pred_scores"]) <= model.max_tracks
        assert len(out["pred_mask_rles"]) == len(out["pred_scores"]) == len(out["pred_classes"])
        assert all(len(track) == 7 for track in out["pred_mask_rles"])
        assert (out["pred_scores"][:-1] >= out["pred_scores"][1:]).all()
        model.association.mode = "hungarian"
        assert len(model([video])[0]["pred_scores"]) > 0
        model.association.match_threshold = 1.1  # nothing continues: 4 new tracks a clip
        model.max_tracks = 100
        split = model([video])[0]
        assert len(split["pred_mask_rles"]) == 4 * 3
        model.score_threshold = 1.1  # everything is background
        empty = model([video])[0]
        assert len(empty["pred_scores"]) == 0 and empty["pred_mask_rles"] == []
        with pytest.raises(ValueError, match="no frames"):
            model([{"image": [], "video_id": 9}])


# ------------------------------------------------------- association study
def _study_gt(path):
    import json

    import numpy as np
    import pycocotools.mask as mask_util

    T, H, W = 6, 64, 64
    annotations = []
    for k, (category, x0, dx) in enumerate(((1, 4, 4), (1, 40, -4), (2, 20, 0))):
        segs, boxes, areas = [], [], []
        for f in range(T):
            if k == 2 and f == 3:  # track 2 absent in frame 3
                segs.append(None), boxes.append(None), areas.append(None)
                continue
            m = np.zeros((H, W), dtype=np.uint8, order="F")
            x = x0 + dx * f
            m[10 + 20 * (k == 2) : 22 + 20 * (k == 2), x : x + 12] = 1
            rle = mask_util.encode(m)
            rle["counts"] = rle["counts"].decode()
            segs.append(rle)
            boxes.append([float(v) for v in mask_util.toBbox(rle)])
            areas.append(float(m.sum()))
        annotations.append(
            {
                "id": k + 1, "video_id": 1, "category_id": category, "iscrowd": 0,
                "segmentations": segs, "bboxes": boxes, "areas": areas,
                "width": W, "height": H, "length": T,
            }
        )  # fmt: skip
    gt = {
        "videos": [{"id": 1, "width": W, "height": H, "length": T}],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
        "annotations": annotations,
    }
    with open(path, "w") as f:
        json.dump(gt, f)


def test_association_study_scores_exact_embeddings_perfectly(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "association_study", os.path.join(ROOT, "tools", "association_study.py")
    )
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    gt = tmp_path / "gt.json"
    _study_gt(gt)
    # the two class-1 tracks cross (their boxes overlap in frames 3-5): one crossing pair
    easy = study.main(
        ["--gt", str(gt), "--seeds", "1", "2", "--noise", "0.0", "--twin-gap", "1.0",
         "--box-jitter", "0.0", "--json-out", str(tmp_path / "t.json")]
    )  # fmt: skip
    assert easy["strata"] == {"1": 1} and [r["mode"] for r in easy["rows"]] == [
        "qap(w=1,sc=1)",
        "hungarian",
    ]
    for row in easy["rows"]:
        assert row["idsw"] == (0.0, 0.0) and row["AP"][0] == pytest.approx(100.0)
    assert (tmp_path / "t.json").exists()
    # twins identical and the noise large: identities break
    hard = study.main(
        ["--gt", str(gt), "--seeds", "1", "2", "3", "--noise", "2.0", "--twin-gap", "0.0",
         "--match-threshold", "0.9"]
    )  # fmt: skip
    assert any(row["idsw"][0] > 0 for row in hard["rows"])


def test_a_far_newcomer_twin_does_not_take_the_track_of_the_one_that_stayed():
    """Unequal graph sizes (a logged case of the association study): instance 0 stays where track
    0 was, its look-alike twin 2 enters far from everyone. Self-loops in the edge weights shifted
    the centring by graph size and sent the twin to track 0; without them the layout decides."""
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    cur = torch.stack([a, b, a, b])  # twins 0 and 2 (class a), 1 and 3 (class b): exact ties
    tracks = torch.stack([a, b, b])
    c_cur = torch.tensor([[0.06, 0.67], [0.32, 0.61], [0.74, 0.02], [0.46, 0.64]])
    c_tracks = torch.tensor([[0.05, 0.65], [0.46, 0.65], [0.31, 0.62]])
    for correction in (False, True):
        qap = GraphAssociation(match_threshold=-1.0, size_correction=correction)
        A1 = qap.edge_weights(cur, c_cur)
        assert (A1.diagonal() == 0).all()
        perm, _ = qap.assign(cur, tracks, c_cur, c_tracks)
        assert perm.tolist() == [0, 2, -1, 1], correction
