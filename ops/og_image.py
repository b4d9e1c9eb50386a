"""The Open Graph image: `gateway/static/og-image.svg` rendered to `og-image.png` (`python -m ops.og_image`).

Link previewers fetch `og:image` and most refuse SVG: Facebook, LinkedIn, X/Twitter cards, Slack, Discord, Signal,
Telegram and iMessage take PNG, JPEG, GIF or WebP only (an SVG there is ignored or shows a blank card). So the SVG
is the source kept in the repo and the PNG is built from it (by `make run`, `make test`, the image build and the
browser tests), with Debian's `rsvg-convert` (installed when missing). Until it is built, pages name the SVG.
"""

from __future__ import annotations

import shutil
import subprocess
from importlib import resources
from pathlib import Path

from ops.services._util import apt_install

WIDTH, HEIGHT = 1200, 630  # what previewers crop large cards to (1.91:1)


def static_dir() -> Path:
    return Path(str(resources.files("gateway").joinpath("static")))


def build(force: bool = False) -> Path:
    """Render the PNG beside its SVG unless it is already newer than the SVG; its path."""
    source, target = static_dir() / "og-image.svg", static_dir() / "og-image.png"
    if not force and target.exists() and target.stat().st_mtime >= source.stat().st_mtime:
        return target
    if shutil.which("rsvg-convert") is None:
        apt_install("librsvg2-bin")
    partial = target.with_suffix(".png.tmp")
    cmd = ["rsvg-convert", "-w", str(WIDTH), "-h", str(HEIGHT), "-f", "png", "-o", str(partial), str(source)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)
    partial.replace(target)  # a gateway reading it meanwhile sees the old file or the new one, never half of one
    return target


if __name__ == "__main__":
    print(build())
