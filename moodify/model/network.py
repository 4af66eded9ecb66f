"""The CNN. Built only from its config dataclass; this module does no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class NetConfig:
    """Everything needed to rebuild the network; saved inside every checkpoint."""

    # Channels of each conv block; every block halves the spatial size (48 -> 24 -> 12 -> 6 -> 3).
    widths: list[int] = field(default_factory=lambda: [32, 64, 128, 256])
    # 3x3 convolutions per block (VGG style).
    convs_per_block: int = 2
    # Width of the hidden fully connected layer.
    hidden: int = 256
    # Dropout before each fully connected layer: FER2013 is small, the FC head overfits first.
    dropout: float = 0.5
    num_classes: int = 7
    input_size: int = 48  # pixels, square grayscale input


class EmotionNet(nn.Module):
    """VGG-style conv blocks (conv-BN-ReLU x k, max-pool) and a two-layer head, returning logits."""

    def __init__(self, config: NetConfig):
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        channels = 1
        for width in config.widths:
            for _ in range(config.convs_per_block):
                layers += [
                    nn.Conv2d(channels, width, 3, padding=1, bias=False),
                    nn.BatchNorm2d(width),
                    nn.ReLU(inplace=True),
                ]
                channels = width
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        spatial = config.input_size // 2 ** len(config.widths)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(config.dropout),
            nn.Linear(channels * spatial * spatial, config.hidden),
            nn.BatchNorm1d(config.hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden, config.num_classes),
        )
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: normalised faces (N, 1, H, W) -> logits (N, num_classes)."""
        return self.head(self.features(x))


def fold_batchnorm(net: nn.Module) -> nn.Module:
    """An eval-mode copy of ``net`` with every Conv2d -> BatchNorm2d and Linear -> BatchNorm1d pair
    folded into the conv or linear layer (the BatchNorm becomes Identity).

    Same outputs, fewer memory passes: about 1.3x faster on CPU, and onnxruntime's int8
    quantizer needs it (it tries per-channel scales on BatchNorm1d's 1-D weight).
    """
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

    net = copy.deepcopy(net).eval()
    for parent in net.modules():
        children = list(parent.named_children())
        for (name_a, a), (name_b, b) in zip(children, children[1:]):
            if isinstance(a, nn.Conv2d) and isinstance(b, nn.BatchNorm2d):
                setattr(parent, name_a, fuse_conv_bn_eval(a, b))
            elif isinstance(a, nn.Linear) and isinstance(b, nn.BatchNorm1d):
                setattr(parent, name_a, fuse_linear_bn_eval(a, b))
            else:
                continue
            setattr(parent, name_b, nn.Identity())
    return net
