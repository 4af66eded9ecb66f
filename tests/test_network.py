"""The network's inference form: BatchNorm folded into the layers before it changes no output."""

from __future__ import annotations

import torch

from moodify.model.network import EmotionNet, NetConfig, fold_batchnorm


def test_folding_batchnorm_keeps_the_logits_and_removes_every_batchnorm():
    torch.manual_seed(0)
    net = EmotionNet(NetConfig(widths=[8, 16, 32], hidden=24))
    net.train()
    for _ in range(5):  # running statistics far from the identity, as after training
        net(torch.randn(32, 1, 48, 48) * 3 + 1)
    net.eval()
    folded = fold_batchnorm(net)
    assert not any(isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())  # the original is left alone
    x = torch.randn(16, 1, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), net(x), atol=1e-4, rtol=1e-4)
