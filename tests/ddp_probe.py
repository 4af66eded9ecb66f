"""Launched by tests/test_distributed.py under torchrun: ``moodify train`` in one process of the
group, recording the faces this process trained on and the weights it ended with.

Usage: torchrun --nproc_per_node N tests/ddp_probe.py RECORD_DIR [moodify train options]
"""

from __future__ import annotations

import hashlib
import os
import sys

import numpy as np
import torch

from moodify.training import train

record_dir, argv = sys.argv[1], sys.argv[2:]
rank = int(os.environ["RANK"])
seen: dict[int, list[str]] = {}
epoch_now = [-1]
initial: dict[str, torch.Tensor] = {}
nets: list[torch.nn.Module] = []

real_normalize, real_epoch = train.normalize, train.train_one_epoch


def recording_normalize(images, prep):
    seen.setdefault(epoch_now[0], []).extend(hashlib.sha1(np.asarray(face).tobytes()).hexdigest() for face in images)
    return real_normalize(images, prep)


def recording_epoch(net, *args, epoch, **kwargs):
    epoch_now[0] = epoch
    if not nets:
        nets.append(net)
        initial.update({k: v.detach().clone() for k, v in net.state_dict().items()})
    return real_epoch(net, *args, epoch=epoch, **kwargs)


train.normalize, train.train_one_epoch = recording_normalize, recording_epoch
train.main(train.get_args_parser().parse_args(argv))
net = nets[0]
torch.save({"seen": seen, "initial": initial, "final": {k: v.detach().clone() for k, v in net.state_dict().items()},
            "distributed": isinstance(net, torch.nn.parallel.DistributedDataParallel),
            "world": int(os.environ["WORLD_SIZE"])}, os.path.join(record_dir, f"rank{rank}.pt"))
