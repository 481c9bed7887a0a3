"""Screenshots of TensorBoard's views of a run or sweep, as a person opening it sees them.

    python scripts/tensorboard_screenshots.py multirun/2026-11-21/10-00-00 docs/ \
        --prefix sweep_tensorboard

starts `tensorboard --logdir <logdir>` on a free local port, opens each view in headless
Chromium (Debian's `chromium` package) and writes <prefix>_<view>.png into the output folder,
then stops TensorBoard. Nothing is clicked: each picture is the view's first screen.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

# TensorBoard's dashboards by their URL fragment; timeseries is the one it opens on.
VIEWS = ("timeseries", "scalars", "custom_scalars", "images", "hparams")
# Headless Chromium as root, with no network of its own: without the background-networking
# flags it tries to reach Google's services and the page's connections are refused. Without a
# GPU it has no WebGL, in which TIME SERIES draws its lines: the pages are opened with
# TensorBoard's forceSVG flag, which draws the same charts as SVG.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("logdir", type=Path, help="a run's or sweep's directory, or outputs/")
    parser.add_argument("out_dir", type=Path, help="where the PNG files go")
    parser.add_argument("--prefix", default="tensorboard", help="file name prefix")
    parser.add_argument("--size", default="1600,1800", help="browser window, width,height")
    parser.add_argument("--views", nargs="+", default=VIEWS, choices=VIEWS)
    parser.add_argument("--wait", type=float, default=15, help="seconds a page may load")
    args = parser.parse_args()
    browser = shutil.which("chromium")
    if browser is None:
        sys.exit("tensorboard_screenshots: chromium not found; apt-get install chromium")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    with _tensorboard(args.logdir) as url, tempfile.TemporaryDirectory() as profile:
        for view in args.views:
            path = args.out_dir / f"{args.prefix}_{view}.png"
            subprocess.run(
                [
                    browser,
                    *CHROMIUM_FLAGS,
                    f"--user-data-dir={profile}",
                    f"--window-size={args.size}",
                    f"--virtual-time-budget={int(args.wait * 1000)}",
                    f"--screenshot={path.resolve()}",
                    f"{url}/?forceSVG=true#{view}",
                ],
                check=True,
                capture_output=True,
                timeout=args.wait + 120,
            )
            print(path)


class _tensorboard:
    """`tensorboard --logdir <logdir>` on a free port, stopped (with its data server, in its
    process group) on exit; entered once it lists runs."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir

    def __enter__(self) -> str:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        tensorboard = Path(sys.executable).parent / "tensorboard"
        self.server = subprocess.Popen(
            [tensorboard, "--logdir", self.logdir, "--host", "127.0.0.1", "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.server.poll() is None:
            try:
                with urllib.request.urlopen(f"{url}/data/runs", timeout=5) as response:
                    if json.loads(response.read()):
                        return url
            except OSError:
                pass
            time.sleep(0.3)
        self.__exit__()
        sys.exit(f"tensorboard_screenshots: TensorBoard found no runs under {self.logdir}")

    def __exit__(self, *exc: object) -> None:
        os.killpg(self.server.pid, signal.SIGTERM)
        self.server.wait(timeout=30)


if __name__ == "__main__":
    main()
