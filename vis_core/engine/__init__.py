"""Training: the detectron2 trainer every project's train_net.py uses."""

from .checkpoint import load_inference_weights
from .launcher import build_video_cfg, launch_train_net, train_or_evaluate
from .trainer import VideoTrainer, build_video_optimizer

__all__ = [
    "VideoTrainer",
    "build_video_cfg",
    "build_video_optimizer",
    "launch_train_net",
    "load_inference_weights",
    "train_or_evaluate",
]
