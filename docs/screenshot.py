"""Regenerate docs/app.png, the README's picture of the web app: ``python docs/screenshot.py``.

Starts ``streamlit run app.py`` on 127.0.0.1, uploads scikit-image's astronaut photo in the
system Chromium (as the browser tests do) and saves the page. Needs chromium and playwright.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from browser_helpers import browser_wrapper, chromium_args, find_chromium, running_app  # noqa: E402


def main(out: Path = ROOT / "docs" / "app.png") -> None:
    from playwright.sync_api import sync_playwright
    from skimage import data

    chromium = find_chromium()
    if chromium is None:
        sys.exit("screenshot: needs Chromium (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as tmp:
        photo = Path(tmp) / "astronaut.jpg"
        cv2.imwrite(str(photo), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
        with running_app() as url, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=browser_wrapper(chromium, Path(tmp)), headless=True,
                                        args=chromium_args())
            page = browser.new_page(viewport={"width": 1400, "height": 1050})
            page.set_default_timeout(300_000)
            page.goto(url)
            page.locator('input[type="file"]').set_input_files(str(photo))
            page.get_by_role("button", name="Download annotated PNG").wait_for()
            page.wait_for_load_state("networkidle")
            page.wait_for_timeout(2000)  # charts finish drawing
            page.screenshot(path=str(out))
            browser.close()
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
