"""Peak memory of each entry point on each input of the hostile-input corpus (``tests/bad_inputs.py``).

    python benchmarks/bench_bad_inputs.py              # ~5 minutes on 2 cores

Every input runs alone in a fresh process (``python -m moodify classify FILE``, ``batch FILE
--workers 1``, the API and ``video`` through ``tests/bad_inputs.py``), so each figure is that
input's own peak resident memory (interpreter, torch and the model included), measured with
``wait4``. The table ends with the worst input of each path and the baseline (a normal photo).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import cv2

PROJECT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(PROJECT), str(PROJECT / "tests")]

from bad_inputs import make_corpus, run_measured  # noqa: E402

ENV = {"PYTHONPATH": str(PROJECT)}
PROBE = PROJECT / "tests" / "bad_inputs.py"


def commands(path: str, out: Path) -> dict[str, list]:
    python = sys.executable
    return {"API": [python, PROBE, "api", path],
            "classify": [python, "-m", "moodify", "classify", path],
            "batch": [python, "-m", "moodify", "batch", path, "-o", out, "--workers", "1", "--quiet", "--overwrite"],
            "video": [python, PROBE, "video", path]}


def main() -> None:
    from skimage import data

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "corpus"
        expected = make_corpus(folder, cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
        paths = list(commands("x", Path(tmp)))
        print(f"{'input':28s}" + "".join(f"{p:>10s}" for p in paths) + "   (peak MB; status)")
        peaks: dict[str, dict[str, float]] = {p: {} for p in paths}
        for name in sorted(expected):
            cells = []
            for what, argv in commands(os.path.join(str(folder), name), Path(tmp) / "out.csv").items():
                try:
                    status, _, err, peak = run_measured(list(map(str, argv)), timeout=300, env=ENV, cwd=PROJECT)
                except TimeoutError:
                    status, err, peak = "hang", "", float("nan")
                peaks[what][name] = peak
                cells.append(f"{peak:>7,.0f} {status!s:>2s}" + ("!" if "Traceback" in err else ""))
            print(f"{name.encode('utf-8', 'backslashreplace').decode():28s}" + "".join(cells), flush=True)
        print()
        for what in paths:
            worst = max(peaks[what], key=peaks[what].get)
            print(f"{what:9s} worst: {worst.encode('utf-8', 'backslashreplace').decode()} {peaks[what][worst]:,.0f} MB; "
                  f"a normal photo (face.jpg): {peaks[what]['face.jpg']:,.0f} MB")


if __name__ == "__main__":
    main()
