"""vis_core.modeling.video_inputs: pixel statistics, normalise-and-pad, TEST.VIS argument checks."""

import pytest
import torch
from torch import nn

from vis_core.modeling.video_inputs import (
    check_test_vis_args,
    normalize_and_pad,
    register_pixel_stats,
)


def test_pixel_stats_are_buffers_outside_the_state_dict():
    m = nn.Module()
    register_pixel_stats(m, [1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
    assert m.pixel_mean.shape == (3, 1, 1) and m.pixel_std.shape == (3, 1, 1)
    assert m.pixel_std.flatten().tolist() == [4.0, 5.0, 6.0]
    assert m.state_dict() == {}
    with pytest.raises(
        ValueError,
        match=r"PIXEL_MEAN \[1.0, 2.0, 3.0\] and MODEL.PIXEL_STD \[4.0\] differ in length",
    ):
        register_pixel_stats(nn.Module(), [1.0, 2.0, 3.0], [4.0])


def test_normalize_and_pad_values_and_padding():
    mean = torch.tensor([10.0, 20.0, 30.0]).view(3, 1, 1)
    std = torch.tensor([2.0, 4.0, 5.0]).view(3, 1, 1)
    a = torch.randint(0, 256, (3, 5, 7), dtype=torch.uint8)
    b = torch.randint(0, 256, (3, 9, 4), dtype=torch.uint8)
    images = normalize_and_pad([a, b], mean, std, 8, "Model")
    assert images.tensor.shape == (2, 3, 16, 8)  # max (9, 7) padded up to multiples of 8
    assert images.image_sizes == [(5, 7), (9, 4)]
    assert torch.allclose(images.tensor[0, :, :5, :7], (a.float() - mean) / std)
    assert torch.allclose(images.tensor[1, :, :9, :4], (b.float() - mean) / std)
    assert images.tensor[0, :, 5:].abs().sum() == 0 and images.tensor[1, :, :, 4:].abs().sum() == 0


def test_normalize_and_pad_names_the_model_and_frame():
    mean, std = torch.zeros(3, 1, 1), torch.ones(3, 1, 1)
    good = torch.zeros(3, 4, 4, dtype=torch.uint8)
    with pytest.raises(
        ValueError, match=r"VISOLO: frame 1 has shape \(4, 4\), expected \(3, H, W\)"
    ):
        normalize_and_pad([good, torch.zeros(4, 4)], mean, std, 1, "VISOLO")
    with pytest.raises(ValueError, match=r"TeViT: frame 0 has shape \(1, 4, 4\)"):
        normalize_and_pad([torch.zeros(1, 4, 4)], mean, std, 1, "TeViT")


@pytest.mark.parametrize(
    "args, message",
    [
        ((0.0, 0, None), "MASK_THRESHOLD must be in"),
        ((1.0, 0, None), "MASK_THRESHOLD must be in"),
        ((0.5, -1, None), "WINDOW_SIZE must be >= 0"),
        ((0.5, 0, 0), "MAX_TRACKS must be >= 1"),
    ],
)
def test_check_test_vis_args_rejects(args, message):
    with pytest.raises(ValueError, match=message):
        check_test_vis_args(*args)


def test_check_test_vis_args_accepts():
    check_test_vis_args(0.5, 0)
    check_test_vis_args(0.4, 36, 10)
