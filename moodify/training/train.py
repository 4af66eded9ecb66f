"""Training: ``moodify train``. Shaped like torchvision's classification reference.

``get_args_parser()`` -> ``main(args)`` -> ``train_one_epoch(...)`` / ``validate(...)`` (``evaluate``),
then ``finalize`` (``calibrate``). Every epoch
appends a JSON line to ``OUT/log.jsonl`` and rewrites ``OUT/checkpoint.pt`` (model, EMA,
optimiser, schedule, RNG) so ``--resume`` continues exactly; the best epoch on PublicTest (never
PrivateTest) becomes ``OUT/model.pt`` with a temperature fitted on PublicTest.

Runs unchanged under ``torchrun --nproc_per_node N`` (DistributedDataParallel: gloo on CPU, nccl
on GPU): each process takes its own slice of every epoch's shuffled order.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from ..cli.options import HelpFormatter
from ..errors import ModelError, TrainError
from ..files import check_outputs
from ..labels import EMOTIONS
from ..model.checkpoint import load_checkpoint, make_checkpoint, net_config, save_checkpoint
from ..model.ensemble import is_ensemble
from ..model.registry import load_model, resolve_model_path
from ..model.network import EmotionNet, NetConfig
from ..pipeline.preprocess import FER2013_FRAMING, Preprocessing, normalize
from .augment import AugmentConfig, PhotoConfig, augment_batch, photo_augment
from .calibrate import finalize
from .data import FaceSet, load_dataset
from .evaluate import validate
from .metrics import softmax


DESCRIPTION = ("Train an emotion CNN on FER2013 (Training split). Selection and calibration use "
               "PublicTest only; PrivateTest is never read.")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="moodify train", description=DESCRIPTION,
                                formatter_class=HelpFormatter)
    add_arguments(p)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="FER2013 data: a root holding fer2013/fer2013.csv.gz, the CSV itself, "
                                  "or a train/ test/ folder layout (default: $MOODIFY_DATA)")
    p.add_argument("--labels", default="fer2013", choices=["fer2013", "ferplus", "ferplus-soft"],
                   help="training targets: FER2013 labels, FER+ majority vote, or FER+ vote distributions")
    p.add_argument("--out", default="runs/fer2013", help="output folder: log.jsonl, checkpoint.pt, model.pt")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--init", metavar="MODEL",
                   help="start from this model's weights (a registry name or a checkpoint of one network), "
                        "e.g. to fine-tune it; its network options replace --widths/--convs-per-block/"
                        "--hidden/--dropout")
    p.add_argument("--epochs", type=int, default=50, help="training epochs")
    p.add_argument("--batch-size", type=int, default=128, help="faces per optimiser step (per process)")
    p.add_argument("--optimizer", default="sgd", choices=["sgd", "adamw"], help="SGD uses Nesterov momentum 0.9")
    p.add_argument("--lr", type=float, default=0.05, help="peak learning rate")
    p.add_argument("--weight-decay", type=float, default=5e-4, help="L2 weight decay (not on BN/bias)")
    p.add_argument("--warmup-epochs", type=float, default=2.0, help="linear LR warm-up before the cosine decay")
    p.add_argument("--label-smoothing", type=float, default=0.1, help="cross-entropy label smoothing")
    p.add_argument("--mixup", type=float, default=0.0, help="mixup Beta(alpha, alpha); 0 turns it off")
    p.add_argument("--teacher", nargs="+", metavar="MODEL",
                   help="distil from these models (registry names or checkpoints): their mean flip-averaged "
                        "probabilities on each training face are blended into the target")
    p.add_argument("--distill", type=float, default=0.5,
                   help="with --teacher: weight of the teacher's probabilities in the target (0..1)")
    p.add_argument("--distill-temperature", type=float, default=2.0,
                   help="with --teacher: softening temperature of the teacher's logits")
    p.add_argument("--ema-decay", type=float, default=0.999, help="per-step EMA of weights used for "
                                                                  "validation and export; 0 turns it off")
    p.add_argument("--widths", type=int, nargs="+", default=NetConfig().widths, help="channels per conv block")
    p.add_argument("--convs-per-block", type=int, default=NetConfig().convs_per_block, help="3x3 convs per block")
    p.add_argument("--hidden", type=int, default=NetConfig().hidden, help="hidden FC width")
    p.add_argument("--dropout", type=float, default=NetConfig().dropout, help="dropout in the FC head")
    p.add_argument("--shift", type=float, default=AugmentConfig.shift, help="augment: max shift, fraction of side")
    p.add_argument("--scale", type=float, default=AugmentConfig.scale, help="augment: max zoom in/out, fraction")
    p.add_argument("--rotate", type=float, default=AugmentConfig.rotate, help="augment: max rotation, degrees")
    p.add_argument("--erase", type=float, default=AugmentConfig.erase_p, help="augment: random-erasing probability")
    p.add_argument("--no-flip", action="store_true", help="augment: no horizontal flips")
    p.add_argument("--photo-aug", type=float, default=PhotoConfig.p, metavar="P",
                   help="augment: probability of each real-photo effect per face (exposure and tone, blur, "
                        "sensor noise, JPEG, low resolution; ranges in moodify.training.augment.PhotoConfig); "
                        "0 turns them off")
    p.add_argument("--tta", default="auto", choices=["auto", "on", "off"],
                   help="flip test-time augmentation in the shipped model: auto picks it where it is more "
                        "accurate on PublicTest; off halves the cost of predict")
    p.add_argument("--seed", type=int, default=0, help="seed for init, shuffling and augmentation")
    p.add_argument("--device", default="auto", help="auto (CUDA if present, else CPU), cpu, cuda, cuda:1 ...")
    p.add_argument("--amp", default="auto", choices=["auto", "on", "off"],
                   help="mixed precision: bf16 autocast. auto: on CUDA; on a CPU with native bf16 "
                        "(AVX-512 BF16, AMX) where a few timed steps show it faster than fp32")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    p.add_argument("--limit", type=int, default=0, help="use only the first N training and N validation "
                                                        "faces (smoke tests); 0 uses all")


def _setup_distributed(device_arg: str) -> tuple[int, int, torch.device]:
    """(rank, world size, device); initialises the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if device_arg == "auto":
        device_arg = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device_arg)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world, device


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _lr_lambda(warmup_steps: int, total_steps: int):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return factor


def _param_groups(net: torch.nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, param in net.named_parameters():
        (no_decay if param.ndim <= 1 else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _targets(batch_labels: torch.Tensor, batch_soft: torch.Tensor | None, num_classes: int,
             smoothing: float) -> torch.Tensor:
    """Soft target distributions: one-hot or FER+ votes, label-smoothed."""
    target = batch_soft if batch_soft is not None else F.one_hot(batch_labels, num_classes).float()
    return target * (1 - smoothing) + smoothing / num_classes


def train_one_epoch(net: torch.nn.Module, ema: AveragedModel | None, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler, train: FaceSet, prep: Preprocessing,
                    args: argparse.Namespace, *, epoch: int, rank: int, world: int, device: torch.device,
                    amp: bool, generator: torch.Generator, teacher: torch.Tensor | None = None) -> dict:
    """One pass over this process's share of the shuffled training set; returns loss and accuracy.

    ``teacher``: (N, classes) probabilities of a teacher model for every training face, blended into
    the target with weight ``args.distill`` (knowledge distillation).
    """
    net.train()
    images = torch.from_numpy(train.images)
    labels = torch.from_numpy(train.labels)
    soft = torch.from_numpy(train.soft) if train.soft is not None else None
    # Same permutation on every process (seeded by epoch), each takes a disjoint stride of it.
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(args.seed * 1000 + epoch))
    order = order[rank::world]
    steps = len(order) // args.batch_size  # drop the ragged last batch: BN dislikes tiny batches
    aug = AugmentConfig(shift=args.shift, scale=args.scale, rotate=args.rotate, flip=not args.no_flip,
                        erase_p=args.erase)
    photo = PhotoConfig(p=args.photo_aug)
    # Its own generator, seeded by run, epoch and process: a run resumed at an epoch draws the same.
    photo_rng = np.random.default_rng([args.seed, epoch, rank])
    num_classes = net.module.config.num_classes if hasattr(net, "module") else net.config.num_classes
    total_loss = total_correct = seen = 0.0
    bar = tqdm(range(steps), desc=f"epoch {epoch + 1}/{args.epochs}", disable=rank != 0, leave=False,
               mininterval=2.0)
    for step in bar:
        idx = order[step * args.batch_size:(step + 1) * args.batch_size]
        x = normalize(photo_augment(train.images[idx.numpy()], photo, photo_rng), prep)
        x = augment_batch(x, aug, generator).to(device, non_blocking=True)
        y = labels[idx].to(device)
        target = _targets(y, soft[idx].to(device) if soft is not None else None, num_classes, args.label_smoothing)
        if teacher is not None:
            target = (1 - args.distill) * target + args.distill * teacher[idx].to(device)
        if args.mixup > 0:
            lam = float(np.random.default_rng(int(torch.randint(1 << 30, (1,), generator=generator))).beta(
                args.mixup, args.mixup))
            perm = torch.randperm(len(x), generator=generator).to(device)
            x = lam * x + (1 - lam) * x[perm]
            target = lam * target + (1 - lam) * target[perm]
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = net(x)
        loss = torch.sum(-target * F.log_softmax(logits.float(), dim=1), dim=1).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if ema is not None:
            ema.update_parameters(net)
        total_loss += loss.item() * len(idx)
        total_correct += (logits.argmax(1) == y).sum().item()
        seen += len(idx)
        if step % 20 == 0:
            bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{total_correct / seen:.3f}")
    return {"train_loss": total_loss / max(seen, 1), "train_accuracy": total_correct / max(seen, 1)}


def _average_buffers(net: torch.nn.Module, world: int) -> None:
    """Average BatchNorm running statistics over the processes, which each saw different faces.

    DDP averages gradients, so parameters stay equal, but each process updates its own running
    statistics after rank 0's are broadcast at every forward pass; this makes them equal too.
    """
    for buffer in net.buffers():
        if buffer.is_floating_point():
            dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
            buffer.div_(world)


def _teacher_probabilities(args: argparse.Namespace, images: np.ndarray) -> torch.Tensor:
    """The teachers' mean softened, flip-averaged probabilities for every training face (computed once)."""
    if not 0 <= args.distill <= 1:
        raise ValueError(f"--distill must be between 0 and 1, got {args.distill}")
    probs = np.zeros((len(images), len(EMOTIONS)), dtype=np.float64)
    for name in args.teacher:
        try:
            teacher = load_model(name)
        except ModelError as exc:
            raise ModelError(f"--teacher: {exc}") from exc
        t0 = time.time()
        probs += softmax(teacher.logits(images, tta=True), args.distill_temperature) / len(args.teacher)
        print(f"teacher {teacher.name}: probabilities for {len(images)} training faces in {time.time() - t0:.0f} s",
              flush=True)
    return torch.from_numpy(probs).float()


def main(args: argparse.Namespace) -> dict:
    """Train, select on PublicTest, calibrate on PublicTest, write OUT/model.pt; returns its metrics."""
    check_outputs({"--out": args.out}, folders=["--out"])  # a file there, or a path under one: one line, now
    rank, world, device = _setup_distributed(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    ckpt_path = out / "checkpoint.pt"
    command = "moodify train " + " ".join(_argv_of(args))  # as typed, for the provenance
    state, provenance = None, {"command": command, "resumes": []}
    if args.resume:
        state = _read_checkpoint_for_resume(ckpt_path, rank=rank, world=world)
        if "args" in state:
            args, notes = resume_arguments(args, state["args"])
            for note in notes if rank == 0 else ():
                print(f"moodify train: --resume: {note}", file=sys.stderr)
            provenance = {"command": state["provenance"]["command"],
                          "resumes": [*state["provenance"]["resumes"], command]}
        elif rank == 0:
            print("moodify train: --resume: this checkpoint records no arguments (an older Moodify); "
                  "the command line's are used", file=sys.stderr)
    init_weights = init_prep = None
    if args.init and state is None:  # a resumed run already holds weights that started from --init
        init_weights, init_prep, args = _init_weights(args, rank=rank)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    _seed_everything(args.seed)

    sets = load_dataset(args.data, labels=args.labels)
    train, val = sets["Training"], sets["PublicTest"]
    if args.limit:
        train = FaceSet(train.images[:args.limit], train.labels[:args.limit],
                        None if train.soft is None else train.soft[:args.limit])
        val = FaceSet(val.images[:args.limit], val.labels[:args.limit])
    if state is not None and "preprocessing" in state:  # as the run started, e.g. from --init's model
        prep = Preprocessing.from_dict(state["preprocessing"])
    elif init_prep is not None:  # the network's own input: its normalisation and its measured photo crops
        prep = init_prep
    else:
        pixels = train.images.astype(np.float32) / 255.0
        prep = Preprocessing(mean=round(float(pixels.mean()), 4), std=round(float(pixels.std()), 4),
                             framing=FER2013_FRAMING)
        del pixels

    config = NetConfig(widths=list(args.widths), convs_per_block=args.convs_per_block, hidden=args.hidden,
                       dropout=args.dropout)
    if state is not None and args.amp == "auto" and "amp_bf16" in state:
        amp = state["amp_bf16"]  # a resumed run keeps the precision it measured and started in
    else:
        amp = _choose_amp(args, config, device, rank=rank, world=world)
    net = EmotionNet(config)
    if init_weights is not None:
        try:
            net.load_state_dict(init_weights)
        except RuntimeError as exc:
            detail = [line.strip() for line in str(exc).splitlines()[1:] if line.strip()] or [str(exc)]
            raise TrainError(f"--init {args.init}: its weights do not fit the network its config describes "
                             f"({detail[0]}); the checkpoint is damaged") from None
    net = net.to(device).to(memory_format=torch.channels_last)
    model: torch.nn.Module = net
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    if args.optimizer == "sgd":
        optimizer = torch.optim.SGD(_param_groups(net, args.weight_decay), lr=args.lr, momentum=0.9, nesterov=True)
    else:
        optimizer = torch.optim.AdamW(_param_groups(net, args.weight_decay), lr=args.lr)
    steps_per_epoch = len(train) // world // args.batch_size
    if steps_per_epoch == 0:
        raise TrainError(f"{len(train)} training faces is less than one batch of {args.batch_size}")
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _lr_lambda(int(args.warmup_epochs * steps_per_epoch), args.epochs * steps_per_epoch))
    ema = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(args.ema_decay), use_buffers=True) \
        if args.ema_decay > 0 else None
    generator = torch.Generator().manual_seed(args.seed * 7919 + rank)

    start_epoch, best = 0, {"accuracy": -1.0, "epoch": -1}
    if state is not None:
        try:
            net.load_state_dict(state["model"])
        except RuntimeError as exc:
            raise TrainError(f"{ckpt_path} holds a different network than the command line builds "
                             f"({str(exc).splitlines()[0]}); resume with the options it was started with") from None
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if ema is not None and state.get("ema") is not None:
            ema.load_state_dict(state["ema"])
        generator.set_state(state["generator"])
        if "torch_rng" in state:  # dropout draws from the global generator
            torch.set_rng_state(state["torch_rng"])
        start_epoch, best = state["epoch"] + 1, state["best"]
        if rank == 0:
            print(f"resumed from {ckpt_path} at epoch {start_epoch + 1}")

    # Computed after --resume so that finishing a completed run (e.g. --resume --tta off) skips it.
    teacher = _teacher_probabilities(args, train.images) if args.teacher and start_epoch < args.epochs else None
    training_info = {"command": provenance["command"], "resumes": provenance["resumes"], "seed": args.seed,
                     "world_size": world, "device": str(device), "amp_bf16": amp,
                     "train_faces": len(train), "labels": args.labels, "teacher": args.teacher}
    for epoch in range(start_epoch, args.epochs):
        t0 = time.time()
        stats = train_one_epoch(model, ema, optimizer, scheduler, train, prep, args, epoch=epoch, rank=rank,
                                world=world, device=device, amp=amp, generator=generator, teacher=teacher)
        if world > 1:
            _average_buffers(net, world)
        if rank == 0:
            scored = ema.module if ema is not None else net
            report, _ = validate(scored, val, prep)
            record = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"], **stats,
                      "val_accuracy": report["accuracy"], "val_macro_f1": report["macro_f1"],
                      "val_nll": report["nll"], "seconds": round(time.time() - t0, 1)}
            if report["accuracy"] > best["accuracy"]:
                best = {"accuracy": report["accuracy"], "epoch": epoch + 1}
                save_checkpoint(make_checkpoint(scored, config, prep, training={**training_info, "epoch": epoch + 1}),
                             out / "best.pt")
            record["best_val_accuracy"] = best["accuracy"]
            with open(out / "log.jsonl", "a") as fh:
                fh.write(json.dumps(record) + "\n")
            print(json.dumps(record), flush=True)
            save_checkpoint({"model": net.state_dict(), "optimizer": optimizer.state_dict(),
                          "scheduler": scheduler.state_dict(), "ema": ema.state_dict() if ema is not None else None,
                          "generator": generator.get_state(), "torch_rng": torch.get_rng_state(),
                          "epoch": epoch, "best": best, "args": _recorded_args(args), "amp_bf16": amp,
                          "config": dataclasses.asdict(config), "preprocessing": prep.to_dict(),
                          "provenance": provenance}, ckpt_path)
        if world > 1:
            dist.barrier()

    result = {}
    if rank == 0:
        result = finalize(out / "best.pt", val, out / "model.pt", tta=args.tta, provenance=provenance)
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return result


def _read_checkpoint_for_resume(ckpt_path: Path, *, rank: int, world: int) -> dict:
    """OUT/checkpoint.pt, read by rank 0 and handed to the other processes.

    Only rank 0 writes checkpoints, so on several machines only its machine has one; the others
    need no copy of it (nor a shared disk) to resume.
    """
    box = [None]
    if rank == 0 and ckpt_path.exists():
        box[0] = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    if world > 1:
        dist.broadcast_object_list(box, src=0)
    if box[0] is None:
        where = " on the machine of rank 0" if world > 1 else ""
        raise TrainError(f"--resume but no checkpoint at {ckpt_path}{where}")
    return box[0]


def _init_weights(args: argparse.Namespace, *,
                  rank: int) -> tuple[dict[str, torch.Tensor], Preprocessing, argparse.Namespace]:
    """``--init``: one model's network weights, its preprocessing, and the arguments with its network options.

    The preprocessing (normalisation, training framing, per-detector photo crops) comes along, so a
    fine-tuned model sees its input as the model it started from did and crops photos the same way.
    """
    name = str(args.init)
    try:
        path, name, sha = resolve_model_path(args.init)
        checkpoint = load_checkpoint(path, expected_sha256=sha)
        if is_ensemble(checkpoint):
            raise ModelError(f"{name} is an ensemble of {len(checkpoint['members'])} networks; "
                             "--init takes one network (a registry name or checkpoint of one)")
        config = net_config(checkpoint.get("config"), name=name)
        prep = Preprocessing.from_dict(checkpoint["preprocessing"])
    except (KeyError, TypeError, ValueError) as exc:
        raise TrainError(f"--init: {name}: its preprocessing is missing or damaged ({exc})") from None
    except ModelError as exc:
        raise TrainError(f"--init: {exc}") from None
    defaults = vars(get_args_parser().parse_args([]))
    merged = vars(args).copy()
    for key in NETWORK_OPTIONS:
        value = getattr(config, key)
        value = list(value) if isinstance(value, (list, tuple)) else value
        if merged[key] != value and merged[key] != defaults[key] and rank == 0:
            print(f"moodify train: --init: --{key.replace('_', '-')} {_shown(value)} from {name} "
                  f"(the network it holds), not {_shown(merged[key])}", file=sys.stderr)
        merged[key] = value
    if rank == 0:
        print(f"starting from {name}'s weights ({path})")
    return checkpoint["state_dict"], prep, argparse.Namespace(**merged)


# Options that define the network a checkpoint holds: a resumed run always takes them from it.
NETWORK_OPTIONS = ("widths", "convs_per_block", "hidden", "dropout")
# Options that belong to the machine or the invocation, never restored from a checkpoint.
PER_RUN_OPTIONS = ("resume", "out", "data", "device", "threads", "command", "func")


def _recorded_args(args: argparse.Namespace) -> dict:
    return {k: v for k, v in vars(args).items() if k not in ("command", "func")}


def resume_arguments(args: argparse.Namespace, saved: dict) -> tuple[argparse.Namespace, list[str]]:
    """The arguments a resumed run uses, and what to tell the user about them.

    The network options always come from the checkpoint. Any other option left at its default on
    the command line takes the checkpoint's value (``--resume`` alone continues the run as it was
    started); one given with another value replaces it (e.g. a shorter ``--epochs``), and is said.
    """
    defaults = vars(get_args_parser().parse_args([]))
    merged, notes = vars(args).copy(), []
    for key, old in saved.items():
        if key in PER_RUN_OPTIONS or key not in merged or merged[key] == old:
            continue
        flag, new = "--" + key.replace("_", "-"), merged[key]
        if key in NETWORK_OPTIONS:
            if new != defaults.get(key):
                notes.append(f"{flag} {_shown(old)} from the checkpoint (the network it holds), not {_shown(new)}")
            merged[key] = old
        elif new == defaults.get(key):
            merged[key] = old
        else:
            notes.append(f"{flag} {_shown(new)} replaces the checkpoint's {_shown(old)}")
    return argparse.Namespace(**merged), notes


def _shown(value) -> str:
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)


def _argv_of(args: argparse.Namespace) -> list[str]:
    """The command-line options that differ from the defaults, to record how a model was made."""
    defaults = vars(get_args_parser().parse_args([]))
    parts = []
    for key, value in vars(args).items():
        if key in ("command", "func") or defaults.get(key) == value:
            continue
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            parts.append(flag)
        elif isinstance(value, list):
            parts += [flag, *map(str, value)]
        else:
            parts += [flag, str(value)]
    return parts


def _choose_amp(args: argparse.Namespace, config: NetConfig, device: torch.device, *, rank: int, world: int) -> bool:
    """--amp on/off as given; auto: bf16 on CUDA, fp32 on CPUs without native bf16 (emulated there,
    many times slower), and on CPUs with it whichever trains this network faster, timed here."""
    if args.amp != "auto":
        return args.amp == "on"
    if device.type == "cuda":
        return True
    if not _cpu_has_bf16():
        return False
    from .train_speed import pick_amp

    amp, rates = pick_amp(config, device=device, batch_size=args.batch_size)
    if world > 1:  # every process trains the same way: rank 0's measurement decides
        decided = torch.tensor([int(amp)])
        dist.broadcast(decided, 0)
        amp = bool(decided.item())
    if rank == 0:
        print(f"moodify train: --amp auto: {rates['fp32']:.0f} images/s in fp32, {rates['bf16']:.0f} with bf16 "
              f"autocast: training in {'bf16' if amp else 'fp32'}", file=sys.stderr)
    return amp


def _cpu_has_bf16() -> bool:
    """True where this CPU has native bf16 (AVX-512 BF16 / AMX): there autocast is 2-3x faster."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = fh.read()
        return "avx512_bf16" in flags or "amx_bf16" in flags
    except OSError:
        return False


if __name__ == "__main__":
    main(get_args_parser().parse_args())
