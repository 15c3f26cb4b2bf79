"""VISOLO project: configs, one training step, inference, the streaming API, ablations, bad input."""

import os

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
import visolo.meta_arch as visolo_meta_arch
from detectron2.modeling import build_model
from detectron2.structures import BitMasks, Boxes, Instances
from visolo import add_visolo_config
from visolo.inference import MemoryEntry, MemoryQueue, greedy_link
from visolo.targets import assign_cells

from tests.projects.common import project_cfg, project_configs, project_root, seeded_model
from vis_core.engine import load_inference_weights
from vis_core.modeling.matrix_nms import matrix_nms

ROOT = project_root("VISOLO")
CONFIGS = project_configs(ROOT)


def make_cfg(config="synthvis/VISOLO_R18.yaml", opts=()):
    return project_cfg(ROOT, add_visolo_config, config, opts)


TINY = [
    "MODEL.VISOLO.HIDDEN_DIM", "32",
    "MODEL.VISOLO.TRACK_DIM", "32",
    "MODEL.VISOLO.GRID_NUM", "[4, 6]",
    "MODEL.VISOLO.NUM_CLASSES", "3",
]  # fmt: skip
# Random weights score every cell low: let everything through so inference has instances to track.
LOOSE = ["MODEL.VISOLO.SCORE_THR", "0.0", "MODEL.VISOLO.UPDATE_THR", "0.0"]


def tiny_model(opts=(), seed=0):
    return seeded_model(make_cfg(opts=TINY + list(opts)), seed)


def make_clip(t=3, h=64, w=96, n=2, seed=0, absent=()):
    g = torch.Generator().manual_seed(seed)
    images = [torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8) for _ in range(t)]
    instances = []
    for f in range(t):
        inst = Instances((h, w))
        masks = torch.zeros(n, h, w, dtype=torch.bool)
        ids = torch.arange(n) + 1
        for k in range(n):
            if (f, k) in absent:
                ids[k] = -1
                continue
            masks[k, 8 + 4 * f : 30 + 4 * f, 6 + 40 * k : 40 + 40 * k] = True
        inst.gt_masks = BitMasks(masks)
        inst.gt_classes = torch.arange(n) % 3
        inst.gt_ids = ids
        inst.gt_boxes = Boxes(torch.zeros(n, 4))
        instances.append(inst)
    return {"image": images, "instances": instances, "height": h, "width": w, "video_id": seed}


def make_video(t=6, h=64, w=96, orig=(96, 144), seed=1):
    g = torch.Generator().manual_seed(seed)
    frames = [torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8) for _ in range(t)]
    return {"image": frames, "height": orig[0], "width": orig[1], "video_id": seed, "length": t}


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: os.path.relpath(p, ROOT))
def test_every_yaml_loads_and_builds(config):
    cfg = make_cfg(os.path.relpath(config, os.path.join(ROOT, "configs")))
    model = build_model(cfg)  # no weights are loaded by build_model
    assert type(model).__name__ == "VISOLO"
    assert model.category_post.pred.out_channels == cfg.MODEL.VISOLO.NUM_CLASSES
    assert model.grid == tuple(cfg.MODEL.VISOLO.GRID_NUM)


def test_base_config_holds_the_paper_defaults():
    cfg = make_cfg("youtubevis_2019/VISOLO_R50.yaml")
    v = cfg.MODEL.VISOLO
    assert tuple(v.GRID_NUM) == (12, 21) and v.IN_FEATURES == ["res2", "res3", "res4"]
    assert (v.FOCAL_ALPHA, v.FOCAL_GAMMA, v.MASK_WEIGHT, v.SAMPLING_EPS) == (0.25, 2.0, 3.0, 0.2)
    assert (v.NMS_KERNEL, v.NMS_SIGMA, v.SCORE_THR, v.UPDATE_THR, v.TRACKING_THR) == (
        "gaussian", 2.0, 0.1, 0.05, 0.1
    )  # fmt: skip
    assert v.MEMORY.INTERVAL == 5
    assert cfg.INPUT.SAMPLING_FRAME_NUM == 3 and cfg.INPUT.SAMPLING_FRAME_RANGE == 20
    assert cfg.INPUT.SAMPLING_FRAME_SHUFFLE
    assert cfg.INPUT.PER_FRAME_AUGMENTATIONS == ["rotation", "crop"]
    assert cfg.INPUT.PER_FRAME_ROTATION_ANGLE == 15.0
    assert tuple(cfg.INPUT.PER_FRAME_CROP_SIZE) == (352, 624)
    s = cfg.SOLVER
    assert (s.OPTIMIZER, s.BASE_LR, s.BACKBONE_MULTIPLIER, s.MAX_ITER) == (
        "ADAMW",
        1e-4,
        0.1,
        140000,
    )
    assert tuple(s.STEPS) == (60000, 100000) and s.CLIP_GRADIENTS.ENABLED
    assert cfg.MODEL.RESNETS.OUT_FEATURES == ["res2", "res3", "res4"]


def test_training_step_gives_finite_losses_and_gradients_reach_the_heads():
    model = tiny_model()
    model.train()
    losses = model([make_clip(seed=0), make_clip(seed=1, absent={(1, 0)})])
    assert set(losses) == {"loss_cat", "loss_mask", "loss_tracking"}
    for name, value in losses.items():
        assert torch.isfinite(value) and value.item() > 0, name
    sum(losses.values()).backward()
    for module in (
        model.category_post.pred,
        model.kernel_post.pred,
        model.mask_branch.pred,
        model.matching.query_head,
        model.matching.ref_head,
        model.aggregation.conv,
        model.backbone.stem,
    ):
        grads = [p.grad for p in module.parameters()]
        assert all(g is not None for g in grads)
        assert sum(g.abs().sum().item() for g in grads) > 0


def test_empty_ground_truth_trains():
    model = tiny_model()
    model.train()
    no_objects = make_clip(n=0)
    all_absent = make_clip(n=1, absent={(0, 0), (1, 0), (2, 0)})
    losses = model([no_objects, all_absent])
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_mask"].item() == 0 and losses["loss_tracking"].item() == 0
    sum(losses.values()).backward()
    assert model.category_post.pred.weight.grad.abs().sum() > 0


def test_training_with_two_frame_and_single_frame_clips():
    model = tiny_model()
    model.train()
    for t in (1, 2):
        losses = model([make_clip(t=t)])
        assert all(torch.isfinite(v) for v in losses.values())


def test_inference_returns_the_common_video_output():
    model = tiny_model(LOOSE).eval()
    video = make_video(t=6)
    (out,) = model([video])
    n = out["pred_scores"].shape[0]
    assert n > 0 and out["pred_classes"].shape == (n,) and out["pred_classes"].dtype == torch.long
    assert out["pred_classes"].max() < 3 and len(out["pred_mask_rles"]) == n
    assert torch.all(out["pred_scores"][:-1] >= out["pred_scores"][1:])
    present = 0
    for track in out["pred_mask_rles"]:
        assert len(track) == 6
        for rle in track:
            if rle is not None:
                present += 1
                assert list(rle["size"]) == [96, 144]
                assert mask_util.decode(rle).shape == (96, 144)
    assert present >= n  # every track is present at least once


def test_streaming_api_matches_the_whole_video_call():
    model = tiny_model(LOOSE).eval()
    video = make_video(t=7)
    (whole,) = model([video])
    state = model.init_state(video["height"], video["width"], video_id=video["video_id"])
    for t, frame in enumerate(video["image"]):
        inst = model.step(state, frame)
        assert inst.image_size == (96, 144) and inst.pred_masks.shape[1:] == (96, 144)
        assert len(inst.track_ids) == len(inst.scores) == len(set(inst.track_ids.tolist()))
    streamed = model.finalize(state)
    assert torch.equal(whole["pred_scores"], streamed["pred_scores"])
    assert torch.equal(whole["pred_classes"], streamed["pred_classes"])
    assert whole["pred_mask_rles"] == streamed["pred_mask_rles"]


def test_streaming_frames_are_tracked_across_frames():
    model = tiny_model(LOOSE + ["MODEL.VISOLO.TRACKING_THR", "0.0"]).eval()
    video = make_video(t=4)
    video["image"] = [video["image"][0]] * 4  # a still video: every instance links to itself
    state = model.init_state(96, 144)
    ids = [model.step(state, f).track_ids.tolist() for f in video["image"]]
    assert len(ids[0]) > 0 and all(sorted(i) == sorted(ids[0]) for i in ids)


def _capture(module, store, key, use_input):
    def hook(mod, inputs, output):
        store[key] = (inputs[0] if use_input else output).detach().clone()

    return module.register_forward_hook(hook)


@pytest.mark.parametrize(
    "ta_cat,ta_mask", [(True, True), (False, True), (True, False), (False, False)]
)
def test_temporal_aggregation_switches(ta_cat, ta_mask):
    model = tiny_model(
        [
            "MODEL.VISOLO.TEMPORAL_AGGREGATION_CATEGORY", str(ta_cat),
            "MODEL.VISOLO.TEMPORAL_AGGREGATION_MASK", str(ta_mask),
        ]  # fmt: skip
    ).eval()
    store = {}
    pre_cat = model.category_pre.register_forward_hook(
        lambda m, i, o: store.__setitem__("cat_pre", o[1].detach().clone())
    )
    hooks = [
        pre_cat,
        _capture(model.category_post, store, "cat_post", True),
        _capture(model.kernel_pre, store, "kernel_pre", False),
        _capture(model.kernel_post, store, "kernel_post", True),
    ]
    state = model.init_state(64, 96)
    for frame in make_video(t=2)["image"]:
        model.step(state, frame)
    for h in hooks:
        h.remove()
    # With aggregation off, the post branch sees the frame's own feature, untouched by the memory.
    assert torch.equal(store["cat_pre"], store["cat_post"]) == (not ta_cat)
    assert torch.equal(store["kernel_pre"], store["kernel_post"]) == (not ta_mask)


def _reweighting_weights_of_each_frame(model, video, monkeypatch):
    """The score-reweighting weights (G,) or None that ``decode_frame`` gets, frame by frame."""
    seen = []
    real = visolo_meta_arch.decode_frame

    def spy(class_probs, kernels, mask_feat, size, weights, **kw):
        seen.append(weights)
        return real(class_probs, kernels, mask_feat, size, weights, **kw)

    monkeypatch.setattr(visolo_meta_arch, "decode_frame", spy)
    state = model.init_state(video["height"], video["width"])
    for frame in video["image"]:
        model.step(state, frame)
    return seen


@pytest.mark.parametrize("sr", [True, False])
def test_score_reweighting_switch(sr, monkeypatch):
    model = tiny_model(LOOSE + ["MODEL.VISOLO.SCORE_REWEIGHTING", str(sr)]).eval()
    seen = _reweighting_weights_of_each_frame(model, make_video(t=3), monkeypatch)
    assert seen[0] is None  # the first frame has nothing to compare with
    for w in seen[1:]:
        if sr:
            assert w is not None and w.shape == (24,) and torch.all((w >= 0) & (w <= 1))
        else:
            assert w is None


def test_memory_queue_follows_every_fifth_frame_plus_the_newest():
    def frames_before(t, cap):
        q = MemoryQueue(interval=5, num_recent=2, max_long_term=cap)
        for f in range(t):
            q.add(MemoryEntry(f, None, None, None))
        return [e.frame for e in q.entries]

    # The official code's memory when processing frame t (derived from its update rule).
    assert frames_before(1, 0) == [0]
    assert frames_before(2, 0) == [0, 1]
    assert frames_before(6, 0) == [0, 4, 5]
    assert frames_before(8, 0) == [0, 5, 6, 7]
    assert frames_before(13, 0) == [0, 5, 10, 11, 12]
    assert frames_before(1000, 0)[-3:] == [995, 998, 999] and len(frames_before(1000, 0)) == 202
    capped = frames_before(1000, 3)
    assert capped == [985, 990, 995, 998, 999]


def test_state_stays_bounded_on_a_long_video():
    model = tiny_model(LOOSE + ["MODEL.VISOLO.MEMORY.MAX_LONG_TERM", "2",
                                "MODEL.VISOLO.LOST_BANK_SIZE", "3"]).eval()  # fmt: skip
    state = model.init_state(32, 48)
    g = torch.Generator().manual_seed(3)
    for _ in range(25):
        model.step(state, torch.randint(0, 256, (3, 32, 48), generator=g, dtype=torch.uint8))
    assert len(state.memory) <= 4 and len(state.lost) <= 3
    out = model.finalize(state)
    assert all(len(track) == 25 for track in out["pred_mask_rles"])


def test_matrix_nms_decays_overlapping_masks_of_one_class():
    masks = torch.zeros(3, 10, 10, dtype=torch.bool)
    masks[0, :5] = True
    masks[1, :5] = True  # a duplicate of mask 0
    masks[2, 5:] = True
    scores = torch.tensor([0.9, 0.8, 0.7])
    same = matrix_nms(masks, torch.tensor([0, 0, 0]), scores, kernel="gaussian", sigma=2.0)
    assert torch.allclose(same, torch.tensor([0.9, 0.8 * float(np.exp(-2.0)), 0.7]))
    other = matrix_nms(masks, torch.tensor([0, 1, 0]), scores)
    assert torch.allclose(other, scores)
    linear = matrix_nms(masks, torch.tensor([0, 0, 0]), scores, kernel="linear")
    assert torch.allclose(linear, torch.tensor([0.9, 0.0, 0.7]))
    assert matrix_nms(masks[:0], torch.zeros(0), scores[:0]).numel() == 0


def test_centre_sampling_assigns_cells_near_the_centre():
    masks = torch.zeros(3, 40, 60, dtype=torch.bool)
    masks[0, 0:10, 0:30] = True  # centre (4.5, 14.5) +- (1, 3): cell (0, 1) of a 4x6 grid of 10x10
    masks[1, 0:10, 0:30] = True  # the same object again: loses every tie to the first
    owner = assign_cells(masks, (4, 6), (40, 60), eps=0.2).reshape(4, 6)
    assert (owner >= 0).sum() == 1 and owner[0, 1] == 0
    big = torch.zeros(1, 40, 60, dtype=torch.bool)
    big[:, :, :] = True  # eps * size = 8 x 12 around (19.5, 29.5): rows 1-2, columns 2-3
    owner = assign_cells(big, (4, 6), (40, 60), eps=0.2).reshape(4, 6)
    assert owner[1:3, 2:4].eq(0).all() and (owner >= 0).sum() == 4
    assert (
        assign_cells(masks[2:], (4, 6), (40, 60), 0.2) == -1
    ).all()  # an empty mask owns nothing


def test_greedy_link_takes_the_most_similar_free_candidate():
    sim = torch.tensor([[0.9, 0.8], [0.2, 0.7]])  # candidates x current
    assigned = [None, None]
    used = greedy_link(sim, [10, 11], assigned, thr=0.5, taken_ids=set())
    assert assigned == [10, 11] and used == [True, True]
    assigned = [None, None]
    greedy_link(sim, [10, 11], assigned, thr=0.75, taken_ids=set())
    assert assigned == [10, None]  # 0.7 is below the threshold


def test_frames_of_different_sizes_are_refused():
    model = tiny_model().eval()
    state = model.init_state(64, 96, video_id="v7")
    model.step(state, torch.zeros(3, 64, 96, dtype=torch.uint8))
    with pytest.raises(ValueError, match="v7.*frame 1 has size 80x64"):
        model.step(state, torch.zeros(3, 64, 80, dtype=torch.uint8))


def test_empty_video_is_refused():
    model = tiny_model().eval()
    with pytest.raises(ValueError, match="video 5 has no frames"):
        model([{"image": [], "height": 10, "width": 10, "video_id": 5}])


def test_unknown_config_key_is_refused(tmp_path):
    with pytest.raises(AssertionError, match="Non-existent key: MODEL.VISOLO.NOT_A_KEY"):
        make_cfg(opts=["MODEL.VISOLO.NOT_A_KEY", "1"])
    bad = tmp_path / "bad.yaml"
    bad.write_text('_BASE_: "%s"\nMODEL:\n  VISOLO:\n    GRIDNUM: [3, 3]\n' % CONFIGS[0])
    with pytest.raises(KeyError, match="MODEL.VISOLO.GRIDNUM"):
        make_cfg(str(bad))


def test_weights_of_another_architecture_are_refused(tmp_path):
    other = tiny_model(["MODEL.VISOLO.NUM_CLASSES", "5"])
    path = str(tmp_path / "other.pth")
    torch.save({"model": other.state_dict()}, path)
    model = tiny_model()
    with pytest.raises(ValueError, match="do not fit this VISOLO"):
        load_inference_weights(model, path)
    torch.save({"model": {"some.other.net": torch.zeros(3)}}, path)
    with pytest.raises(ValueError, match="parameters outside the backbone missing"):
        load_inference_weights(model, path)
    same = tiny_model(seed=1)
    torch.save({"model": same.state_dict()}, path)
    load_inference_weights(model, path)
    assert torch.equal(model.category_post.pred.weight, same.category_post.pred.weight)


# ---------------------------------------------------------------- training faults, end to end
def trainer_cfg(tmp_path, max_iter, name="visolo_tiny_train"):
    """The tiny VISOLO on a tiny YTVIS set in tmp_path, with a checkpoint every 2 iterations."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    from tests.conftest import write_tiny_ytvis
    from vis_core.data import register_ytvis_instances

    for catalog in (DatasetCatalog, MetadataCatalog):
        if name in catalog.list():
            catalog.remove(name)
    json_path, image_root, _ = write_tiny_ytvis(str(tmp_path / "data"), num_videos=2)
    register_ytvis_instances(name, {}, json_path, image_root)
    one_clip_per_step = [
        "DATASETS.TRAIN", f"('{name}',)", "DATASETS.TEST", "()", "DATALOADER.NUM_WORKERS", "0",
        "INPUT.MIN_SIZE_TRAIN", "(48,)", "INPUT.MAX_SIZE_TRAIN", "64",
        "INPUT.MIN_SIZE_TEST", "48", "INPUT.MAX_SIZE_TEST", "64",
        "SOLVER.IMS_PER_BATCH", "1", "SOLVER.MAX_ITER", str(max_iter), "SOLVER.STEPS", "(3,)",
        "SOLVER.WARMUP_ITERS", "0", "SOLVER.CHECKPOINT_PERIOD", "2",
        "OUTPUT_DIR", str(tmp_path / "out"), "MODEL.VISOLO.NUM_CLASSES", "2",
    ]  # fmt: skip
    cfg = make_cfg(opts=TINY + one_clip_per_step)
    return cfg, image_root


def test_resume_after_a_kill_continues_iteration_optimizer_and_scheduler(tmp_path):
    from detectron2.engine import HookBase

    from vis_core.engine import VideoTrainer

    class Kill(HookBase):
        def after_step(self):
            if self.trainer.iter == 3:
                raise KeyboardInterrupt("killed after iteration 3")

    cfg, _ = trainer_cfg(tmp_path, max_iter=6)
    first = VideoTrainer(cfg)
    first.register_hooks([Kill()])
    first.resume_or_load(resume=False)
    with pytest.raises(KeyboardInterrupt):
        first.train()
    with open(os.path.join(cfg.OUTPUT_DIR, "last_checkpoint")) as f:
        last = f.read().strip()
    assert last == "model_0000003.pth"
    saved = torch.load(os.path.join(cfg.OUTPUT_DIR, last), weights_only=False)

    resumed = VideoTrainer(cfg)  # what `train_net.py --resume` does
    resumed.resume_or_load(resume=True)
    assert resumed.start_iter == saved["iteration"] + 1 == 4
    assert resumed.scheduler.last_epoch == 4
    for group in resumed.optimizer.param_groups:  # past the step at iteration 3
        assert group["lr"] == pytest.approx(group["initial_lr"] * cfg.SOLVER.GAMMA)
    optim_state = resumed.optimizer.state_dict()["state"]
    assert optim_state, "AdamW moments were not restored"
    for k, v in saved["trainer"]["_trainer"]["optimizer"]["state"].items():
        assert torch.equal(optim_state[k]["exp_avg_sq"], v["exp_avg_sq"])
        assert optim_state[k]["step"] == v["step"] == 4  # iterations 0-3
    for key, value in resumed.model.state_dict().items():
        assert torch.equal(value, saved["model"][key]), key
    resumed.train()
    assert resumed.iter == cfg.SOLVER.MAX_ITER
    assert os.path.isfile(os.path.join(cfg.OUTPUT_DIR, "model_final.pth"))


def test_non_finite_loss_names_the_term_and_the_iteration(tmp_path, monkeypatch):
    from vis_core.engine import VideoTrainer

    real = visolo_meta_arch.dice_mask_loss
    monkeypatch.setattr(
        visolo_meta_arch, "dice_mask_loss", lambda *a, **k: real(*a, **k) * float("nan")
    )
    cfg, _ = trainer_cfg(tmp_path, max_iter=4)
    trainer = VideoTrainer(cfg)
    with pytest.raises(FloatingPointError, match=r"\['loss_mask'\] became non-finite.*iteration 0"):
        trainer.train()


def test_missing_frame_file_is_named_before_evaluation(tmp_path):
    from vis_core.engine import VideoTrainer

    cfg, image_root = trainer_cfg(tmp_path, max_iter=1, name="visolo_tiny_missing")
    cfg.DATASETS.TEST = cfg.DATASETS.TRAIN
    os.remove(os.path.join(image_root, "video2", "00004.png"))
    model = build_model(cfg).eval()
    with pytest.raises(FileNotFoundError, match=r"video 2: .*00004\.png"):
        VideoTrainer.test(cfg, model)


def test_benchmark_memory_plays_the_video_forwards_and_backwards():
    import importlib.util

    path = os.path.join(ROOT, "benchmark_memory.py")  # a script of the project, not in its package
    spec = importlib.util.spec_from_file_location("visolo_benchmark_memory", path)
    benchmark_memory = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark_memory)

    assert benchmark_memory._ping_pong(3, 9) == [0, 1, 2, 1, 0, 1, 2, 1, 0]
    assert benchmark_memory._ping_pong(1, 3) == [0, 0, 0]


def test_memory_transformed_once_per_frame_reads_the_same():
    from visolo.memory import TemporalAggregation

    torch.manual_seed(0)
    agg = TemporalAggregation(32, "GN").eval()
    sim, feat, mem = (
        torch.randn(2, 24, 3 * 24),
        torch.randn(2, 32, 4, 6),
        torch.randn(2, 3, 32, 4, 6),
    )
    one_by_one = torch.cat([agg.transform(mem[:, m : m + 1]) for m in range(3)], dim=1)
    assert torch.allclose(agg(sim, feat, mem), agg.read(sim, feat, one_by_one), atol=1e-5)


def _randomise_biases(model):
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d) and module.bias is not None:
                module.bias.normal_()


def test_official_checkpoint_with_an_unknown_module_is_refused(tmp_path):
    from tests.projects.official_checkpoints import (
        official_layout,
        random_state_dict,
        write_checkpoint,
    )

    state = random_state_dict(official_layout("visolo"))
    state["model.Extra_branch.conv.weight"] = torch.zeros(1)
    path = write_checkpoint(state, str(tmp_path / "odd.pth"), "pth")
    model = build_model(make_cfg("youtubevis_2019/VISOLO_R50.yaml"))
    with pytest.raises(ValueError, match="no counterpart for 'model.Extra_branch.conv.weight'"):
        load_inference_weights(model, path)


def test_version_1_weights_without_conv_biases_load_with_zero_biases(tmp_path):
    old = tiny_model(seed=1)
    _randomise_biases(old)
    state = old.state_dict()
    normed = [
        name
        for name, m in old.named_modules()
        if isinstance(m, torch.nn.Conv2d)
        and m.bias is not None
        and getattr(m, "norm", None) is not None
    ]
    assert normed
    for name in normed:  # version 1 had no bias where a norm follows
        del state[name + ".bias"]
    state._metadata[""]["version"] = 1
    path = str(tmp_path / "v1.pth")
    torch.save({"model": state}, path)
    model = tiny_model(seed=0)
    load_inference_weights(model, path)
    loaded = model.state_dict()
    for name in normed:
        assert not loaded[name + ".bias"].any(), name
    for key, value in state.items():
        assert torch.equal(loaded[key], value), key
    # A current checkpoint that lacks a bias is incomplete, not old: it is refused.
    state._metadata[""]["version"] = 2
    torch.save({"model": state}, path)
    with pytest.raises(ValueError, match="do not fit this VISOLO"):
        load_inference_weights(tiny_model(), path)


# ---------------------------------------------------------------- fidelity to the official code
def test_official_checkpoint_layout_loads_whole_through_model_weights(tmp_path):
    """The released file's names and shapes (tests/projects/data, from the official code): every
    official tensor reaches the paper-config model and every tensor of ours comes from the file."""
    from tests.projects.official_checkpoints import check_official_file

    def cfg_with_weights(path):
        return make_cfg("youtubevis_2019/VISOLO_R50.yaml", ["MODEL.WEIGHTS", path])

    aliases = {"tracking_module.": "model.Tracking_branch."}  # the same tensors in the file
    path = str(tmp_path / "visolo_official.pth")
    entries, ours = check_official_file("visolo", cfg_with_weights, path, "pth", aliases)
    assert (entries, ours) == (357, 357 - 24)


def _official_memory_references(num_frames):
    """The official inference loop's reference frames for scoring frame t, written out from its
    memory update (m: frame indices; frame n-1 is scored at step n with m[-1] = n-1)."""
    refs = {1: [0]}
    m = [0, 1, 2]
    for n in range(3, num_frames + 1):
        refs[n - 1] = [m[-2], m[-3]]
        if n == num_frames:
            break
        m = m + [n] if n % 5 == 2 else m[:-2] + [m[-1], n]
    return refs


@pytest.mark.parametrize("rule", ["official", "recent"])
def test_reweighting_references_follow_the_official_memory_or_the_newest_two(rule):
    model = tiny_model(["MODEL.VISOLO.REWEIGHTING_FRAMES", rule])
    official = _official_memory_references(40)
    queue = MemoryQueue(interval=5, num_recent=2, max_long_term=20)
    queue.add(MemoryEntry(0, None, None, None))
    for t in range(1, 40):
        frames = [e.frame for e in model.reweighting_references(queue)]
        if rule == "official":
            assert frames == official[t], t
        else:
            assert frames == [t - 1, t - 2][: min(t, 2)], t
        queue.add(MemoryEntry(t, None, None, None))
    assert official[8] == [7, 5] and official[6] == [5, 0]  # not t-2: the newest 5k before t-1


def test_reweighting_frames_change_the_weights_from_frame_3_on(monkeypatch):
    seen = {}
    for rule in ("official", "recent"):
        model = tiny_model(LOOSE + ["MODEL.VISOLO.REWEIGHTING_FRAMES", rule]).eval()
        seen[rule] = _reweighting_weights_of_each_frame(model, make_video(t=5), monkeypatch)
    official, recent = seen["official"], seen["recent"]
    assert official[0] is None and recent[0] is None
    for t in (1, 2):  # frame 1: frame 0 only; frame 2: frames 1 and 0 under both rules
        assert torch.equal(official[t], recent[t])
    for t in (3, 4):  # frames 2 and 0 (official) against 2 and 1, 3 and 2 against 3 and 0
        assert not torch.equal(official[t], recent[t])


def test_unknown_reweighting_frames_or_centre_region_is_refused():
    with pytest.raises(ValueError, match="REWEIGHTING_FRAMES = 'newest'"):
        tiny_model(["MODEL.VISOLO.REWEIGHTING_FRAMES", "newest"])
    with pytest.raises(ValueError, match="CENTER_REGION = 'box'"):
        tiny_model(["MODEL.VISOLO.CENTER_REGION", "box"])


def _loop_centre_sampling(masks, grid, eps, official):
    """Centre sampling written as a loop over instances and cells (the official algorithm's
    structure): a claimed cell changes owner only to a strictly nearer centre."""
    sh, sw = grid
    n, h, w = masks.shape
    cell_h, cell_w = h / sh, w / sw
    owner = -np.ones((sh, sw), dtype=int)
    best = np.full((sh, sw), np.inf)
    for k in range(n):
        ys, xs = np.nonzero(masks[k])
        if len(ys) == 0:
            continue
        cy, cx = ys.mean(), xs.mean()
        top, left = (0, 0) if official else (ys.min(), xs.min())
        dy, dx = eps * (ys.max() - top + 1), eps * (xs.max() - left + 1)
        r0, r1 = max(int(np.floor((cy - dy / 2) / cell_h)), 0), min(
            int(np.floor((cy + dy / 2) / cell_h)), sh - 1
        )
        c0, c1 = max(int(np.floor((cx - dx / 2) / cell_w)), 0), min(
            int(np.floor((cx + dx / 2) / cell_w)), sw - 1
        )
        for i in range(r0, r1 + 1):
            for j in range(c0, c1 + 1):
                d = ((i + 0.5) * cell_h - cy) ** 2 + ((j + 0.5) * cell_w - cx) ** 2
                if d < best[i, j]:
                    best[i, j], owner[i, j] = d, k
    return owner.reshape(-1)


@pytest.mark.parametrize("rule", ["mask", "official"])
def test_centre_regions_equal_the_loop_reference(rule):
    rng = np.random.default_rng(0)
    masks = np.zeros((5, 96, 160), dtype=bool)
    for k in range(5):
        y, x = rng.integers(0, 70), rng.integers(0, 130)
        masks[k, y : y + rng.integers(8, 26), x : x + rng.integers(8, 30)] = True
    owner = assign_cells(torch.from_numpy(masks), (6, 10), (96, 160), 0.2, rule).numpy()
    assert np.array_equal(owner, _loop_centre_sampling(masks, (6, 10), 0.2, rule == "official"))
    assert (owner >= 0).any()


def test_official_centre_regions_grow_with_the_distance_from_the_corner():
    masks = torch.zeros(1, 96, 160, dtype=torch.bool)
    masks[0, 70:80, 120:130] = True  # a 10x10 object near the bottom-right corner
    paper = assign_cells(masks, (12, 20), (96, 160), 0.2, "mask")
    official = assign_cells(masks, (12, 20), (96, 160), 0.2, "official")
    assert (paper == 0).sum() == 1 and (official == 0).sum() > 4


def test_paper_configs_do_not_pad_352x624_in_training_or_at_test():
    from vis_core.data import YTVISDatasetMapper

    cfg = make_cfg("youtubevis_2019/VISOLO_R50.yaml")
    assert cfg.MODEL.VISOLO.SIZE_DIVISIBILITY == 16
    model = build_model(cfg)
    images = model.preprocess([torch.zeros(3, 352, 624, dtype=torch.uint8)])
    assert tuple(images.tensor.shape[-2:]) == (352, 624)
    # test time: any frame is resized to exactly 352x624, as the official code
    mapper = YTVISDatasetMapper(cfg, is_train=False)
    for h, w in ((720, 1280), (480, 640), (1080, 1920)):
        frame = np.zeros((h, w, 3), dtype=np.uint8)
        assert tuple(mapper.video_input([frame])["image"][0].shape) == (3, 352, 624)


def test_paper_config_decays_every_parameter_as_the_official_optimiser():
    from vis_core.engine.trainer import video_param_groups

    cfg = make_cfg("youtubevis_2019/VISOLO_R50.yaml")
    model = build_model(cfg)
    groups = video_param_groups(cfg, model)
    assert {g["weight_decay"] for g in groups} == {1e-4}
    gn = sum(isinstance(m, torch.nn.GroupNorm) for m in model.modules())
    assert gn > 0


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: os.path.relpath(p, ROOT))
def test_every_shipped_config_resolves_to_the_official_inference_values(config):
    cfg = make_cfg(os.path.relpath(config, os.path.join(ROOT, "configs")))
    assert cfg.TEST.VIS.MAX_TRACKS == 0  # the official code returns every track of a video
    assert cfg.INPUT.SAMPLING_MAX_TRIES == 0  # clips with no object are trained on
    assert cfg.MODEL.VISOLO.REWEIGHTING_FRAMES == "official"
    v = cfg.MODEL.VISOLO
    assert (v.SCORE_THR, v.MASK_THR, v.UPDATE_THR) == (0.1, 0.5, 0.05)
    if "synthvis" not in config:  # the CPU configs keep fewer candidates for their small scenes
        assert (v.NMS_PRE, v.MAX_PER_FRAME) == (500, 100)


@pytest.mark.parametrize("t", [1, 2, 3])
def test_videos_of_one_two_and_three_frames_run(t):
    """The official code fails below 3 frames; ours gives the common output for any length."""
    model = tiny_model(LOOSE).eval()
    (out,) = model([make_video(t=t)])
    n = len(out["pred_scores"])
    assert n > 0 and out["length"] == t
    assert all(len(track) == t for track in out["pred_mask_rles"])


def test_candidates_with_empty_masks_leave_the_valid_ones():
    """Official getSegMaskV5 turns every score into NaN when two candidates have empty masks, and
    drops the frame when cell 0 is the only candidate; ours keeps the valid candidates."""
    from visolo.inference import decode_frame

    g, e = 6, 4
    class_probs = torch.zeros(g, 3)
    class_probs[[0, 2, 4], 1] = 0.9  # cells 0, 2, 4 are candidates
    kernels = torch.zeros(g, e)
    kernels[0] = 1.0  # cell 0 predicts the whole frame
    kernels[[2, 4]] = -1.0  # cells 2 and 4 predict empty masks
    mask_feat = torch.ones(e, 8, 12)
    args = dict(score_thr=0.1, mask_thr=0.5, nms_pre=500, nms_kernel="gaussian", nms_sigma=2.0,
                update_thr=0.05, max_per_frame=100, overlap_thr=0.5)  # fmt: skip
    dets = decode_frame(class_probs, kernels, mask_feat, (32, 48), None, **args)
    assert dets.cells.tolist() == [0]
    assert torch.isfinite(dets.scores).all() and dets.masks[0].all()


@pytest.mark.parametrize("family", ["youtubevis_2019", "youtubevis_2021", "ovis"])
def test_paper_configs_mix_coco_pseudo_clips_as_the_official_training(family):
    cfg = make_cfg(f"{family}/VISOLO_R50.yaml")
    video_set, coco = cfg.DATASETS.TRAIN
    assert coco == f"coco_{video_set}" and list(cfg.DATASETS.DATASET_RATIO) == [0.75, 0.25]
    from detectron2.data import MetadataCatalog

    assert MetadataCatalog.get(coco).thing_classes == MetadataCatalog.get(video_set).thing_classes
