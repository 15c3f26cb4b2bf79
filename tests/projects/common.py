"""What the project tests share: a project's config from one of its YAMLs, a tiny model, and
small synthetic clips and videos (moving rectangles on random frames)."""

import glob
import os

import pycocotools.mask as mask_util
import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.structures import BitMasks, Boxes, Instances

from vis_core.config import add_vis_config

PROJECTS = os.path.join(os.path.dirname(__file__), "..", "..", "projects")


def project_root(name):
    """projects/<name>."""
    return os.path.join(PROJECTS, name)


def project_configs(root):
    """Every YAML under <root>/configs, sorted."""
    return sorted(glob.glob(os.path.join(root, "configs", "**", "*.yaml"), recursive=True))


def project_config_names(root):
    """Every YAML under <root>/configs as a path relative to it (what project_cfg takes), sorted."""
    return [os.path.relpath(c, os.path.join(root, "configs")) for c in project_configs(root)]


def project_cfg(root, add_project_config, config, opts=()):
    """The config <root>/configs/<config> with vis_core's and the project's keys, opts merged, on
    the CPU."""
    cfg = get_cfg()
    add_vis_config(cfg)
    add_project_config(cfg)
    cfg.merge_from_file(os.path.join(root, "configs", config))
    cfg.merge_from_list(list(opts))
    cfg.MODEL.DEVICE = "cpu"
    return cfg


def seeded_model(cfg, seed=0):
    """build_model(cfg) with its random weights drawn after torch.manual_seed(seed)."""
    torch.manual_seed(seed)
    return build_model(cfg)


def make_clip(t=2, h=64, w=96, n=2, seed=0, absent=()):
    """A clip with n moving rectangles; (track, frame) pairs in ``absent`` are missing (id -1)."""
    g = torch.Generator().manual_seed(seed)
    images = [torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8) for _ in range(t)]
    instances = []
    for f in range(t):
        inst = Instances((h, w))
        masks = torch.zeros((n, h, w), dtype=torch.bool)
        ids = torch.arange(n)
        for i in range(n):
            if (i, f) in absent:
                ids[i] = -1
                continue
            masks[i, 8 + 12 * i : 24 + 12 * i, 4 + 3 * f : 30 + 3 * f] = True
        inst.gt_masks = BitMasks(masks)
        inst.gt_boxes = Boxes(BitMasks(masks).get_bounding_boxes().tensor)
        inst.gt_classes = torch.arange(n) % 3
        inst.gt_ids = ids
        instances.append(inst)
    return {"image": images, "instances": instances, "height": h, "width": w, "video_id": seed}


def make_video(t=5, h=64, w=96, out=(96, 144), seed=1):
    clip = make_clip(t=t, h=h, w=w, n=0, seed=seed)
    clip.pop("instances")
    clip["height"], clip["width"] = out
    return clip


def decode_tracks(rles, t, h, w):
    return torch.stack(
        [
            torch.stack(
                [
                    (
                        torch.zeros((h, w), dtype=torch.bool)
                        if r is None
                        else torch.from_numpy(mask_util.decode(r)).bool()
                    )
                    for r in track
                ]
            )
            for track in rles
        ]
    )
