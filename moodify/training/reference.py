"""Store a measured reference setting in checkpoints (``moodify.pipeline.reference``).

    python -m moodify.training.reference --method logit --weight 0.3 --record default

The setting is chosen by ``benchmarks/bench_reference.py`` on KDEF's train subjects; the model
cards give the figures. A shipped model's sha256 changes with it: update ``REGISTRY``.
"""

from __future__ import annotations

import argparse

from ..pipeline.reference import METHODS, ReferenceSetting


def record_reference_setting(setting: ReferenceSetting, targets: list[str]) -> None:
    """Write ``setting`` into each checkpoint's preprocessing (their sha256 change)."""
    from ..model.registry import rewrite_checkpoint

    for name in targets:
        path = rewrite_checkpoint(name, lambda ckpt: ckpt["preprocessing"].update(reference=setting.to_dict()))
        print(f"recorded the reference setting {setting} in {path} "
              f"(new sha256: update the registry if it is a shipped model)")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m moodify.training.reference", description=__doc__.splitlines()[0])
    p.add_argument("--method", choices=METHODS, required=True)
    p.add_argument("--weight", type=float, required=True)
    p.add_argument("--record", nargs="+", metavar="CHECKPOINT", required=True, help="registry names or checkpoint paths")
    args = p.parse_args(argv)
    record_reference_setting(ReferenceSetting(args.method, args.weight), args.record)


if __name__ == "__main__":
    main()
