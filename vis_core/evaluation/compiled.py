"""The evaluator's compiled helpers: ``vis_core._rle`` where it was built, else None.

``vis_core._rle`` (``vis_core/csrc/rle``) computes mask areas and intersections straight from compressed
RLE strings, decoding each mask once; it does not import torch. Where it is missing (built with
``VIS_CORE_NO_CPU_OPS=1``, or its compilation failed) the evaluator uses pycocotools for the same
integers. One difference on bad input: ``vis_core._rle`` also rejects a predicted mask whose runs do
not add up to its size's height x width, which pycocotools does not check. Tests set ``rle_ops`` to
None to run the pycocotools path.
"""

try:
    from vis_core import _rle as rle_ops
except ImportError:  # not built: the evaluator falls back to pycocotools
    rle_ops = None

__all__ = ["rle_ops"]
