"""A 2-process training loop through detectron2's `launch` on the CPU (gloo): the video train loader
is sharded by rank and DDP keeps the replicas identical."""

import json
import os

import torch
from detectron2.config import get_cfg
from detectron2.engine import SimpleTrainer, launch
from detectron2.utils import comm

from tests.conftest import write_tiny_ytvis
from vis_core.config import add_vis_config
from vis_core.engine.launcher import close_process_group


class _TinyVideoModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 1, 3)
        self.seen = []

    def forward(self, clips):
        losses = []
        for clip in clips:
            self.seen.append((clip["video_id"], tuple(clip["frame_idx"])))
            frames = torch.stack(clip["image"]).float() / 255  # (T, 3, H, W)
            visible = torch.stack([(inst.gt_ids >= 0).sum() for inst in clip["instances"]]).float()
            losses.append(((self.conv(frames).mean((1, 2, 3)) - visible) ** 2).mean())
        return {"loss_fit": torch.stack(losses).mean()}


def _worker(root, out_file):
    from vis_core.data import YTVISDatasetMapper, build_video_train_loader, register_ytvis_instances

    json_path = os.path.join(root, "tiny.json")
    register_ytvis_instances("dist_tiny", {}, json_path, os.path.join(root, "JPEGImages"))
    cfg = add_vis_config(get_cfg())
    cfg.DATASETS.TRAIN = ("dist_tiny",)
    cfg.SOLVER.IMS_PER_BATCH = 2  # one clip per process
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.INPUT.MIN_SIZE_TRAIN = (32,)
    cfg.INPUT.SAMPLING_FRAME_NUM = 2
    torch.manual_seed(0)
    model = _TinyVideoModel()
    ddp = torch.nn.parallel.DistributedDataParallel(model)  # CPU module: no device_ids
    loader = build_video_train_loader(cfg, YTVISDatasetMapper(cfg, is_train=True))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    SimpleTrainer(ddp, loader, optimizer).train(0, 4)
    params = torch.cat([p.detach().flatten() for p in model.parameters()])
    gathered = comm.all_gather({"params": params.tolist(), "seen": model.seen})
    if comm.is_main_process():
        with open(out_file, "w") as f:
            json.dump({"world": comm.get_world_size(), "ranks": gathered}, f)
    close_process_group()  # both ranks leave together, so gloo's sockets close cleanly


def test_two_process_training_through_launch(tmp_path):
    write_tiny_ytvis(str(tmp_path), num_videos=4)
    out_file = str(tmp_path / "result.json")
    launch(_worker, num_gpus_per_machine=2, dist_url="auto", args=(str(tmp_path), out_file))
    result = json.load(open(out_file))
    assert result["world"] == 2
    r0, r1 = result["ranks"]
    assert len(r0["seen"]) == len(r1["seen"]) == 4
    # the two ranks trained on different clips but hold identical weights (gradients all-reduced)
    assert r0["seen"] != r1["seen"]
    assert torch.allclose(torch.tensor(r0["params"]), torch.tensor(r1["params"]))
    initial = torch.nn.Conv2d(3, 1, 3)
    assert r0["params"] != torch.cat([p.detach().flatten() for p in initial.parameters()]).tolist()
