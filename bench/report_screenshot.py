"""Render a run's report.html in headless Chromium (Debian's `chromium` package) and save a screenshot.

The page must work as a user opens it: from disk (file://), with no server and, here, no network.

    csbsr segment sample_data/drone_crops -o /tmp/sample-run --gsd 2.3
    python bench/report_screenshot.py /tmp/sample-run --png docs/report-screenshot.png
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def browser() -> str:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    raise SystemExit("no Chromium found: apt-get install chromium")


def screenshot(page: Path, png: Path, width: int, height: int) -> None:
    """One headless Chromium run: load `page` from disk, wait for it, write `png`."""
    with tempfile.TemporaryDirectory() as profile:
        command = [
            browser(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            f"--user-data-dir={profile}", f"--window-size={width},{height}", "--virtual-time-budget=5000",
            f"--screenshot={png.resolve()}", page.resolve().as_uri(),
        ]  # fmt: skip
        subprocess.run(command, check=True, capture_output=True, timeout=300)
    if not png.is_file() or png.stat().st_size == 0:
        raise SystemExit(f"Chromium wrote no screenshot to {png}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a csbsr segment run folder")
    parser.add_argument("--png", type=Path, default=Path("report-screenshot.png"))
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=1800)
    args = parser.parse_args()
    subprocess.run([str(Path(sys.executable).parent / "csbsr"), "report", str(args.run)], check=True)
    screenshot(args.run / "report.html", args.png, args.width, args.height)
    print(f"{args.png}: {args.png.stat().st_size} bytes")


if __name__ == "__main__":
    main()
