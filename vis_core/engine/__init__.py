"""Training: the detectron2 trainer every project's train_net.py uses."""

from .trainer import VideoTrainer, build_video_optimizer

__all__ = ["VideoTrainer", "build_video_optimizer"]
