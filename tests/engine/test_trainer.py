"""VideoTrainer: optimizer groups, --resume after an interrupted run, channels-last models,
non-finite loss check."""

import os

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.engine import HookBase
from detectron2.modeling import META_ARCH_REGISTRY

from tests.conftest import write_tiny_ytvis
from vis_core.config import add_vis_config
from vis_core.data import register_ytvis_instances
from vis_core.engine import VideoTrainer
from vis_core.engine.trainer import video_param_groups


@META_ARCH_REGISTRY.register()
class _TrainerTestModel(torch.nn.Module):
    """A tiny video model: a 'backbone' conv, an embedding and a norm, one regression loss."""

    def __init__(self, cfg):
        super().__init__()
        self.backbone = torch.nn.Conv2d(3, 4, 3)
        self.query_feat = torch.nn.Embedding(2, 4)
        self.norm = torch.nn.GroupNorm(1, 4)
        self.scale = float(os.environ.get("_TRAINER_TEST_LOSS_SCALE", "1"))

    def forward(self, clips):
        losses = []
        for clip in clips:
            x = torch.stack(clip["image"]).float() / 255
            feat = self.norm(self.backbone(x)).mean((0, 2, 3)) + self.query_feat.weight.mean(0)
            visible = sum(int((i.gt_ids >= 0).sum()) for i in clip["instances"])
            losses.append((feat.sum() - visible) ** 2 * self.scale)
        return {"loss_fit": torch.stack(losses).mean(), "loss_other": feat.abs().mean()}


def _cfg(tmp_path, max_iter):
    name = "trainer_tiny"
    if name not in __import__("detectron2.data").data.DatasetCatalog.list():
        json_path, image_root, _ = write_tiny_ytvis(str(tmp_path / "data"), num_videos=3)
        register_ytvis_instances(name, {}, json_path, image_root)
    cfg = add_vis_config(get_cfg())
    cfg.MODEL.META_ARCHITECTURE = "_TrainerTestModel"
    cfg.MODEL.DEVICE = "cpu"
    cfg.DATASETS.TRAIN = (name,)
    cfg.DATASETS.TEST = ()
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.INPUT.MIN_SIZE_TRAIN = (32,)
    cfg.SOLVER.IMS_PER_BATCH = 1
    cfg.SOLVER.BASE_LR = 0.01
    cfg.SOLVER.MAX_ITER = max_iter
    cfg.SOLVER.STEPS = (3,)
    cfg.SOLVER.WARMUP_ITERS = 0
    cfg.SOLVER.CHECKPOINT_PERIOD = 2
    cfg.SOLVER.WEIGHT_DECAY_EMBED = 0.0
    cfg.SOLVER.WEIGHT_DECAY_NORM = 0.0
    cfg.SOLVER.BACKBONE_MULTIPLIER = 0.1
    cfg.OUTPUT_DIR = str(tmp_path / "out")
    return cfg


def test_param_groups(tmp_path):
    cfg = _cfg(tmp_path, 1)
    cfg.SOLVER.WEIGHT_DECAY = 0.05
    model = _TrainerTestModel(cfg)
    groups = video_param_groups(cfg, model)
    by_param = {id(p): g for g in groups for p in g["params"]}
    assert by_param[id(model.backbone.weight)]["lr"] == pytest.approx(0.001)
    assert by_param[id(model.backbone.weight)]["weight_decay"] == 0.05
    assert by_param[id(model.query_feat.weight)]["weight_decay"] == 0.0
    assert by_param[id(model.norm.weight)]["weight_decay"] == 0.0
    assert by_param[id(model.query_feat.weight)]["lr"] == pytest.approx(0.01)


class _Crash(HookBase):
    def after_step(self):
        if self.trainer.iter == 3:
            raise KeyboardInterrupt("simulated kill after iteration 3")


def test_resume_continues_from_last_checkpoint(tmp_path):
    cfg = _cfg(tmp_path, 6)
    trainer = VideoTrainer(cfg)
    trainer.register_hooks([_Crash()])
    trainer.resume_or_load(resume=False)
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    last = open(os.path.join(cfg.OUTPUT_DIR, "last_checkpoint")).read().strip()
    assert (
        last == "model_0000003.pth"
    )  # the periodic checkpoint of iteration 3 ran before the crash
    saved = torch.load(os.path.join(cfg.OUTPUT_DIR, last), weights_only=False)

    resumed = VideoTrainer(cfg)
    resumed.resume_or_load(resume=True)
    assert resumed.start_iter == 4
    assert saved["iteration"] == 3
    scheduler_state = saved["trainer"]["hooks"]["LRScheduler"]
    assert resumed.scheduler.last_epoch == scheduler_state["last_epoch"] == 4
    state = resumed.optimizer.state_dict()["state"]
    for k, v in saved["trainer"]["_trainer"]["optimizer"]["state"].items():
        assert torch.equal(state[k]["exp_avg"], v["exp_avg"])
    for name, p in resumed.model.state_dict().items():
        assert torch.equal(p, saved["model"][name])
    resumed.train()
    assert resumed.iter == 6  # max_iter: detectron2 leaves iter one past the last step
    assert os.path.isfile(os.path.join(cfg.OUTPUT_DIR, "model_final.pth"))


def test_channels_last_trains_the_same_function(tmp_path):
    cfg = _cfg(tmp_path, 2)
    cfg.MODEL.CHANNELS_LAST = True
    trainer = VideoTrainer(cfg)
    weight = trainer.model.backbone.weight
    assert weight.is_contiguous(memory_format=torch.channels_last)
    assert not weight.is_contiguous()
    initial = weight.detach().clone()
    plain = _TrainerTestModel(cfg)
    plain.load_state_dict(trainer.model.state_dict())
    batch = next(iter(trainer.build_train_loader(cfg)))
    expected = plain(batch)
    for key, value in trainer.model(batch).items():
        assert torch.allclose(value, expected[key], rtol=1e-5, atol=1e-6), key
    trainer.resume_or_load(resume=False)
    trainer.train()
    saved = torch.load(os.path.join(cfg.OUTPUT_DIR, "model_final.pth"), weights_only=False)
    plain.load_state_dict(saved["model"])  # a plain (contiguous) model loads its checkpoint
    assert torch.equal(plain.backbone.weight, trainer.model.backbone.weight)
    assert not torch.equal(plain.backbone.weight, initial)  # trained


def test_truncated_checkpoint_names_the_file(tmp_path):
    from vis_core.engine import load_inference_weights

    cfg = _cfg(tmp_path, 2)
    trainer = VideoTrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    final = os.path.join(cfg.OUTPUT_DIR, "model_final.pth")
    with open(final, "rb") as f:
        head = f.read(os.path.getsize(final) // 2)
    with open(final, "wb") as f:  # as an interrupted copy leaves it
        f.write(head)
    message = r"checkpoint '.*model_final.pth' cannot be read .*truncated"
    with pytest.raises(RuntimeError, match=message):
        VideoTrainer(cfg).resume_or_load(resume=True)  # OUTPUT_DIR/last_checkpoint names it
    with pytest.raises(RuntimeError, match=message):
        load_inference_weights(_TrainerTestModel(cfg), final)


def test_non_finite_loss_names_term_and_iteration(tmp_path, monkeypatch):
    monkeypatch.setenv("_TRAINER_TEST_LOSS_SCALE", "inf")
    cfg = _cfg(tmp_path, 4)
    trainer = VideoTrainer(cfg)
    with pytest.raises(
        FloatingPointError, match=r"\['loss_fit'\] became non-finite .* at iteration 0"
    ):
        trainer.train()
