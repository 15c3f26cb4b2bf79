"""vis_core._rle (mask areas and intersections from compressed RLE) against pycocotools and numpy."""

import numpy as np
import pytest
from pycocotools import mask as mask_util
from ytvis_eval_cases import enc, rand_mask

from vis_core.evaluation import compiled, prepare_predictions
from vis_core.evaluation.ytvis_eval import YTVISGroundTruth

rle_ops = compiled.rle_ops
pytestmark = pytest.mark.skipif(rle_ops is None, reason="vis_core._rle is not built")


def random_masks(rng, n, h, w):
    masks = [rand_mask(rng, h, w) for _ in range(n)]
    masks[0][:] = 0  # empty
    masks[1][:] = 1  # full: a first run of 0
    masks[2][:] = 0
    masks[2][-1, -1] = 1  # one pixel, last
    return masks


def areas(rles):
    return np.frombuffer(rle_ops.areas(rles), dtype=np.int64)


@pytest.mark.parametrize("h, w", [(1, 2), (7, 13), (40, 33), (1080, 1920)])
def test_areas_equal_pycocotools_for_str_and_bytes_counts(h, w):
    rng = np.random.default_rng(h * w)
    rles = [mask_util.encode(np.asfortranarray(m)) for m in random_masks(rng, 12, h, w)]
    for r in rles[::2]:
        r["counts"] = r["counts"].decode()  # str, as in JSON files; the others stay bytes
    np.testing.assert_array_equal(areas(rles), mask_util.area(rles))


def test_intersections_equal_numpy_and_handle_repeated_pairs():
    rng = np.random.default_rng(0)
    h, w, frames = 23, 31, 4
    det_masks = [random_masks(rng, frames, h, w) for _ in range(3)]
    gt_masks = [random_masks(rng, frames, h, w)[::-1] for _ in range(2)]
    dets = [[enc(m) for m in track] for track in det_masks]
    gts = [[enc(m) for m in track] for track in gt_masks]
    d, g, f = (a.ravel() for a in np.meshgrid(range(3), range(2), range(frames), indexing="ij"))
    d, g, f = np.r_[d, d[:5]], np.r_[g, g[:5]], np.r_[f, f[:5]]  # pairs asked twice
    got = np.frombuffer(rle_ops.intersections(dets, gts, d, g, f), dtype=np.int64)
    want = [int((det_masks[i][k] & gt_masks[j][k]).sum()) for i, j, k in zip(d, g, f)]
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    "counts, message",
    [
        ("0{", "not one of compressed RLE's"),  # '{' is past 'o'
        ("0a", "ends inside a run length"),  # 'a' says another group follows
        ("03", "runs cover 3 pixels, but its size 2x3 has 6"),
        ("5O", "negative"),  # O: a last group 0x1f, that is -1
    ],
)
def test_malformed_rle_raises_with_its_position(counts, message):
    good = enc(np.ones((2, 3), np.uint8))
    with pytest.raises(ValueError, match=message) as error:
        rle_ops.areas([good, {"size": [2, 3], "counts": counts}])
    assert error.value.args[0] == 1


def test_malformed_rle_in_results_names_the_result():
    h, w = 2, 3
    gt = YTVISGroundTruth(
        {
            "videos": [{"id": 7, "height": h, "width": w, "length": 1}],
            "categories": [{"id": 1, "name": "a"}],
            "annotations": [],
        }
    )
    bad = {"video_id": 7, "category_id": 1, "score": 0.5,
           "segmentations": [{"size": [h, w], "counts": "03"}]}  # fmt: skip
    with pytest.raises(ValueError, match=r"Result #0 \(video_id 7\): malformed RLE \(its runs"):
        prepare_predictions([bad], gt).avg_areas
