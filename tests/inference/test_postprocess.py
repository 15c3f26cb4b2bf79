"""vis_core.inference.postprocess: chaining windows' queries into tracks."""

import pytest
import torch

from vis_core.inference.postprocess import link_windows


def test_link_windows_follows_each_query_through_shuffled_windows():
    g = torch.Generator().manual_seed(0)
    Q, C, K = 6, 8, 3
    tracks = torch.randn(Q, C, generator=g)
    scores = torch.rand(Q, K, generator=g)
    shuffles = [torch.arange(Q), torch.randperm(Q, generator=g), torch.randperm(Q, generator=g)]
    windows = [
        (tracks[s] + 0.01 * torch.randn(Q, C, generator=g), (w + 1) * scores[s])
        for w, s in enumerate(shuffles)
    ]
    perms, total = link_windows(iter(windows))
    for s, p in zip(shuffles, perms):
        assert torch.equal(s[p], torch.arange(Q))  # query p[i] of the window is track i
    torch.testing.assert_close(total, scores * (1 + 2 + 3))
    with pytest.raises(ValueError, match="no windows"):
        link_windows(iter([]))
