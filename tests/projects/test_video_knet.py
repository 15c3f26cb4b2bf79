"""Video K-Net project (in progress): the kernel update stage against the official formulas and
under the official checkpoint's names and shapes."""

import torch
from torch import nn
from video_knet import ConvKernelHead, KernelUpdateHead, KernelUpdator
from video_knet.losses import kernel_stage_losses

from tests.projects.official_checkpoints import official_layout


def _official(prefix):
    layout = official_layout("video_knet")
    return {k[len(prefix) :]: tuple(v) for k, v in layout.items() if k.startswith(prefix)}


def _ours(module):
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def test_stage_names_and_shapes_are_the_official_checkpoints():
    roi = nn.ModuleList(KernelUpdateHead(40) for _ in range(3))
    assert _ours(roi) == _official("roi_head.mask_head.")
    assert _ours(KernelUpdateHead(40)) == _official("tracker.mask_head.0.")
    # the tracker's last stage has no class branch
    assert _ours(KernelUpdateHead(40, with_cls=False)) == _official("tracker.mask_head.2.")


def test_kernel_head_names_and_shapes_are_the_official_checkpoints():
    assert _ours(ConvKernelHead(40)) == _official("rpn_head.")


def test_kernel_head_makes_stride_8_features_and_kernels_from_their_masks():
    torch.manual_seed(0)
    C, N, H, W = 64, 6, 64, 96
    head = ConvKernelHead(3, num_proposals=N, channels=C).eval()
    feats = [torch.randn(2, C, H // s, W // s) for s in (4, 8, 16, 32)]
    kernels, masks, x = head(feats)
    assert kernels.shape == (2, N, C) and masks.shape == (2, N, H // 8, W // 8)
    assert x.shape == (2, C, H // 8, W // 8)
    hard = (masks.sigmoid() > 0.5).float()
    expected = head.init_kernels.weight.flatten(1)[None] + torch.einsum("bnhw,bchw->bnc", hard, x)
    torch.testing.assert_close(kernels, expected)
    # P5 (with its position encoding) reaches the stride-8 features
    changed = [f.clone() for f in feats]
    changed[3] += 1.0
    assert not torch.allclose(head(changed)[2], x)


def test_kernel_updator_equals_the_official_formula():
    torch.manual_seed(0)
    R, C = 5, 16
    up = KernelUpdator(C, C, C).eval()
    x_feat, kernels = torch.randn(R, C), torch.randn(R, C)
    with torch.no_grad():
        got = up(x_feat, kernels)
        # knet/kernel_updator.py, written out: gates from the product of the two projections
        params = up.dynamic_layer(x_feat)
        inputs = up.input_layer(kernels)
        gate = inputs[:, :C] * params[:, :C]
        ig = torch.sigmoid(up.input_norm_in(up.input_gate(gate)))
        ug = torch.sigmoid(up.norm_in(up.update_gate(gate)))
        feats = ug * up.norm_out(params[:, -C:]) + ig * up.input_norm_out(inputs[:, -C:])
        expected = torch.relu(up.fc_norm(up.fc_layer(feats)))
    torch.testing.assert_close(got, expected)


def test_stage_gathers_with_hard_masks_updates_and_predicts():
    torch.manual_seed(0)
    B, N, C, H, W = 2, 4, 16, 6, 8
    head = KernelUpdateHead(3, in_channels=C, num_heads=2, feedforward_channels=32).eval()
    x, kernels = torch.randn(B, C, H, W), torch.randn(B, N, C)
    masks = torch.full((B, N, 3, 4), -5.0)
    masks[:, 0, :2, :2] = 5.0  # kernel 0 covers the top-left quarter (after resizing)
    cls, new_masks, new_kernels = head(x, kernels, masks)
    assert cls.shape == (B, N, 3) and new_masks.shape == (B, N, H, W)
    assert new_kernels.shape == (B, N, C)
    gathered = head.gather(head.transform(x), masks)
    xt = head.transform(x)
    torch.testing.assert_close(gathered[:, 0], xt[:, :, :4, :4].sum((-2, -1)))
    torch.testing.assert_close(gathered[:, 1], torch.zeros(B, C))  # an empty mask gathers 0
    # the mask branch is a 1x1 conv of the transformed features with the new kernels
    k = head.mask_kernels(new_kernels)
    torch.testing.assert_close(new_masks[0, 1], (k[0, 1][:, None, None] * xt[0]).sum(0))
    (cls.sum() + new_masks.sum()).backward()
    assert head.kernel_update_conv.dynamic_layer.weight.grad.abs().sum() > 0


def test_tracker_stages_share_one_kernel_over_the_clip_then_refine_per_frame():
    torch.manual_seed(0)
    B, T, N, C, H, W = 2, 3, 4, 16, 5, 6
    x = torch.randn(B, T, C, H, W)
    masks = torch.randn(B, T, N, H, W) * 4
    kernels = torch.randn(B, N, C)
    head = KernelUpdateHead(3, in_channels=C, num_heads=2, feedforward_channels=32).eval()
    cls, tube, video_kernels = head.forward_clip(x, kernels, masks)
    assert cls.shape == (B, N, 3) and tube.shape == (B, T, N, H, W)
    # the group feature is the mean over the frames of each frame's gathered feature
    xt = head.transform(x.flatten(0, 1))
    per_frame = head.gather(xt, masks.flatten(0, 1)).view(B, T, N, C)
    torch.testing.assert_close(video_kernels, head.update(per_frame.mean(1), kernels))
    # one kernel segments every frame
    k = head.mask_kernels(video_kernels)
    torch.testing.assert_close(
        tube[1, 2], torch.einsum("nc,chw->nhw", k[1], xt.view(B, T, C, H, W)[1, 2])
    )
    # the last stage: per-frame kernels, no class; a frame's kernels see only that frame
    last = KernelUpdateHead(3, in_channels=C, num_heads=2, feedforward_channels=32, with_cls=False)
    last.eval()
    frame_kernels = video_kernels[:, None].expand(B, T, N, C)
    none, tube2, k2 = last.forward_clip(x, frame_kernels, tube)
    assert none is None and tube2.shape == (B, T, N, H, W) and k2.shape == (B, T, N, C)
    x_changed = x.clone()
    x_changed[:, 0] += 1.0
    _, tube3, _ = last.forward_clip(x_changed, frame_kernels, tube)
    torch.testing.assert_close(tube3[:, 1:], tube2[:, 1:])
    assert not torch.allclose(tube3[:, 0], tube2[:, 0])


def test_stage_losses_equal_the_official_forms():
    torch.manual_seed(0)
    B, N, K, L = 2, 4, 3, 10
    cls, masks = torch.randn(B, N, K), torch.randn(B, N, L) * 2
    labels = [torch.tensor([2, 0]), torch.zeros(0, dtype=torch.long)]
    targets = [torch.rand(2, L).round(), torch.zeros(0, L)]
    indices = [
        (torch.tensor([3, 1]), torch.tensor([0, 1])),
        (torch.zeros(0, dtype=torch.long),) * 2,
    ]
    losses = kernel_stage_losses(cls, masks, indices, labels, targets)
    # focal over all 8 kernels, positives (0, 3) class 2 and (0, 1) class 0, / 2 positives
    onehot = torch.zeros(B * N, K)
    onehot[3, 2] = onehot[1, 0] = 1.0
    p = cls.reshape(-1, K).sigmoid()
    focal = -(
        onehot * 0.25 * (1 - p) ** 2 * p.log() + (1 - onehot) * 0.75 * p**2 * (1 - p).log()
    ).sum()
    torch.testing.assert_close(losses["loss_cls"], 2.0 * focal / 2)
    pred, tgt = masks[0, [3, 1]], targets[0]
    bce = -(tgt * pred.sigmoid().log() + (1 - tgt) * (1 - pred.sigmoid()).log()).mean()
    torch.testing.assert_close(losses["loss_mask"], bce)
    q = pred.sigmoid()
    d = 2 * (q * tgt).sum(1) / ((q * q).sum(1) + 1e-3 + (tgt * tgt).sum(1) + 1e-3)
    torch.testing.assert_close(losses["loss_dice"], 4.0 * (1 - d).mean())
    # no positives: class loss only over background, zero mask losses that keep the graph
    empty = kernel_stage_losses(None, masks.requires_grad_(), [indices[1]] * 2, [labels[1]] * 2,
                                [targets[1]] * 2)  # fmt: skip
    assert set(empty) == {"loss_mask", "loss_dice"} and float(empty["loss_mask"].detach()) == 0.0
    empty["loss_dice"].backward()
