"""Training: the detectron2 trainer every project's train_net.py uses."""

from .checkpoint import load_inference_weights
from .trainer import VideoTrainer, build_video_optimizer

__all__ = ["VideoTrainer", "build_video_optimizer", "load_inference_weights"]
