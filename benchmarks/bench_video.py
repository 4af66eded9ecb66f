"""Video analysis speed as a user meets it: ``moodify video`` on a 4 s clip, and the web app's
Video mode on the same clip through a real browser.

    python benchmarks/bench_video.py [--project DIR] [--repeats 3] [--seconds 4]

``--project``: the checkout to measure (default: this one). The app is started there exactly as
the README says (``streamlit run app.py``, nothing but a port added), so its
``.streamlit/config.toml`` applies; if ``DIR/.venv`` exists its Python runs both the command and
the app, as after the README's install, where the virtual environment sits inside the folder
that Streamlit watches for edits.

The clip is made from a real photo (scikit-image's astronaut): one face drifting across a
640x480 frame at 30 frames/s. Printed: seconds per run (median and all runs) for the command and
for the app (from the upload to the results on the page), and the CPU the idle app burns in 10 s
with the page open (a file watcher polling the virtual environment shows here).

``--busy N`` keeps N other processes spinning on the CPU meanwhile, as on a machine shared with a
training job (the 2-core machines here usually are): that is where torch's default of one
thread per core hurts, since its threads wait for each other at every layer while one of them
is descheduled.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))  # browser_helpers: Debian's Chromium, the fake camera flags

APP_WAIT_S = 600  # the slowest app run seen before the fix took a few minutes on a busy 2-core machine
IDLE_S = 10.0


def python_for(project: Path) -> str:
    venv = project / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def env_for(project: Path) -> dict[str, str]:
    # The checkout's own moodify, whichever checkout the virtual environment was installed from.
    return {**os.environ, "PYTHONPATH": str(project)}


def time_cli(project: Path, clip: Path, out_dir: Path) -> float:
    cmd = [python_for(project), "-m", "moodify", "video", str(clip), "-o", str(out_dir / "cli.mp4"),
           "--csv", str(out_dir / "cli.csv"), "--no-progress"]
    start = time.perf_counter()
    subprocess.run(cmd, cwd=project, env=env_for(project), check=True, capture_output=True)
    return time.perf_counter() - start


def start_app(project: Path, port: int, log: Path) -> subprocess.Popen:
    cmd = [python_for(project), "-m", "streamlit", "run", "app.py", "--server.port", str(port),
           "--server.headless", "true"]
    proc = subprocess.Popen(cmd, cwd=project, env=env_for(project), stdout=open(log, "wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"the app exited; see {log}")
            time.sleep(0.5)
    raise RuntimeError(f"the app did not start; see {log}")


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and its threads, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def time_app_upload(browser, url: str, clip: Path) -> float:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = context.new_page()
        page.set_default_timeout(APP_WAIT_S * 1000)
        page.goto(url)
        page.get_by_role("radio", name="Video").click()
        page.get_by_text("Upload a video to get it back annotated").wait_for()
        start = time.perf_counter()
        page.locator('input[type="file"][accept*=".mp4"]').set_input_files(str(clip))
        page.get_by_role("button", name="Download timeline CSV").wait_for()
        seconds = time.perf_counter() - start
        if "frames analysed" not in page.inner_text("body"):
            raise RuntimeError("the app showed no video result")
        return seconds
    finally:
        context.close()


def _spin() -> None:
    while True:
        pass


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--project", type=Path, default=HERE.parent, help="the checkout to measure")
    p.add_argument("--repeats", type=int, default=3, help="runs of each, after one warm-up run of the command")
    p.add_argument("--seconds", type=float, default=4.0, help="clip length (30 frames/s)")
    p.add_argument("--skip-app", action="store_true", help="time the command only")
    p.add_argument("--busy", type=int, default=0, help="other processes spinning on the CPU meanwhile")
    args = p.parse_args()
    project = args.project.resolve()
    import multiprocessing as mp

    spinners = [mp.Process(target=_spin, daemon=True) for _ in range(args.busy)]
    for spinner in spinners:
        spinner.start()
    try:
        return _measure(args, project)
    finally:
        for spinner in spinners:
            spinner.kill()


def _measure(args, project: Path) -> int:

    from bench_live import make_video
    from browser_helpers import browser_wrapper, chromium_args, find_chromium, free_port

    print(f"project {project} (python {python_for(project)}); {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}; {args.busy} other process(es) spinning", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-video-") as tmp:
        tmp = Path(tmp)
        frames = int(round(args.seconds * 30))
        clip = make_video(tmp / "clip.mp4", 1, frames)
        time_cli(project, clip, tmp)  # warm-up: the page cache, the ONNX/torch imports
        cli = [time_cli(project, clip, tmp) for _ in range(args.repeats)]
        print(f"moodify video, {frames} frames: median {statistics.median(cli):.1f} s "
              f"({', '.join(f'{s:.1f}' for s in cli)})", flush=True)
        if args.skip_app:
            return 0
        chromium = find_chromium()
        if chromium is None:
            print("no Chromium: app not timed")
            return 1
        from playwright.sync_api import sync_playwright

        port = free_port()
        proc = start_app(project, port, tmp / "app.log")
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=browser_wrapper(chromium, tmp), headless=True,
                                             args=chromium_args())
                url = f"http://127.0.0.1:{port}"
                context = browser.new_context()
                page = context.new_page()
                page.goto(url)
                page.get_by_role("radio", name="Upload").wait_for(timeout=APP_WAIT_S * 1000)
                time.sleep(2)
                before = cpu_seconds(proc.pid)
                time.sleep(IDLE_S)
                idle = (cpu_seconds(proc.pid) - before) / IDLE_S
                context.close()
                app = [time_app_upload(browser, url, clip) for _ in range(args.repeats)]
                browser.close()
        finally:
            proc.terminate()
            proc.wait(timeout=20)
        print(f"app Video mode, {frames} frames: median {statistics.median(app):.1f} s "
              f"({', '.join(f'{s:.1f}' for s in app)}); {statistics.median(app) / statistics.median(cli):.1f}x "
              f"the command", flush=True)
        print(f"idle app with the page open: {idle:.0%} of a core", flush=True)
        log = (tmp / "app.log").read_text(errors="replace")
        if "Traceback" in log or "Error" in log:
            print("app log:\n" + log[-3000:])
    print(f"load average now {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
