"""Loading trained weights for inference, refusing files made for another architecture.

detectron2's checkpointer only warns about missing or mis-shaped parameters, which is right when a
training run starts from an ImageNet or COCO model, but turns a wrong file at test time into a model
with random heads that quietly scores zero. ``load_inference_weights`` raises instead.
"""

import logging
import pickle
import zipfile

from detectron2.checkpoint import DetectionCheckpointer

__all__ = ["VideoCheckpointer", "load_inference_weights"]

logger = logging.getLogger(__name__)


class VideoCheckpointer(DetectionCheckpointer):
    """DetectionCheckpointer whose unreadable files (truncated by an interrupted download or save,
    or not a checkpoint at all) raise an error that names the file, instead of torch's or pickle's
    message about a zip archive or an unexpected end of data."""

    def _load_file(self, filename):
        try:
            return super()._load_file(filename)
        except (
            RuntimeError,
            OSError,
            EOFError,
            pickle.UnpicklingError,
            zipfile.BadZipFile,
        ) as error:
            if isinstance(error, FileNotFoundError):
                raise
            raise RuntimeError(
                f"The checkpoint {filename!r} cannot be read ({type(error).__name__}: {error}); it "
                "is probably truncated (an interrupted download or save). Download or copy it "
                "again, or, when resuming, delete it and point OUTPUT_DIR/last_checkpoint at the "
                "previous checkpoint."
            ) from error


class _RecordingCheckpointer(VideoCheckpointer):
    """DetectionCheckpointer that keeps the incompatible keys of the last load."""

    incompatible = None

    def _load_model(self, checkpoint):
        self.incompatible = super()._load_model(checkpoint)
        return self.incompatible


def load_inference_weights(model, path: str, save_dir: str = "", resume: bool = False) -> None:
    """Load ``path`` (or, with ``resume``, the last checkpoint in ``save_dir``) into ``model``.

    Raises ValueError when no weights are given, or when any parameter outside the backbone is
    missing from the file or has another shape there (weights of another method, another number of
    classes, another head size). Missing backbone parameters only warn, as detectron2 does.
    """
    if not path and not resume:
        raise ValueError(
            f"No weights to evaluate {type(model).__name__}: set MODEL.WEIGHTS to a trained checkpoint"
        )
    checkpointer = _RecordingCheckpointer(model, save_dir=save_dir)
    checkpointer.resume_or_load(path, resume=resume)
    bad = checkpointer.incompatible
    if bad is None:
        return
    missing = [k for k in bad.missing_keys if not k.startswith("backbone.")]
    shapes = [f"{k}: file {tuple(a)} vs model {tuple(b)}" for k, a, b in bad.incorrect_shapes]
    if missing or shapes:
        raise ValueError(
            f"The weights {path!r} do not fit this {type(model).__name__} ({len(missing)} parameters "
            f"outside the backbone missing, e.g. {missing[:3]}; {len(shapes)} with another shape, "
            f"e.g. {shapes[:3]}). Are they from another method, or trained with another number of "
            "classes or head size than this config?"
        )
