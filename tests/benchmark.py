"""Benchmarks of the workflow's hot paths against plain baselines, side by side in one run.

    python tests/benchmark.py cache --images 600 --size 224

Not a test: numbers depend on the machine. Each section prints the workflow's rate, the baseline's and
their ratio.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from leukemia_dtl.demo_data import render_cell, _bmp_bytes  # noqa: E402
from leukemia_dtl.image_cache import build_image_cache  # noqa: E402


def write_bmps(folder: Path, count: int, side: int) -> list[str]:
    rng = np.random.default_rng(0)
    stain = np.ones(3, np.float32)
    names = []
    for number in range(count):
        name = f"UID_{number % 40}_{number}_1_all.bmp"
        (folder / name).write_bytes(_bmp_bytes(render_cell(rng, "ALL", stain, side)))
        names.append(name)
    return names


def plain_pil_load(path: Path, size: int) -> np.ndarray:
    """The textbook way: open, convert to RGB, resize bilinearly, one image after the other."""
    return np.asarray(Image.open(path).convert("RGB").resize((size, size), Image.Resampling.BILINEAR))


def benchmark_cache(images: int, size: int, workers: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        names = write_bmps(folder, images, 450)
        # Read every file once so both contenders start from the page cache.
        for name in names:
            (folder / name).read_bytes()

        started = time.perf_counter()
        baseline = np.stack([plain_pil_load(folder / name, size) for name in names])
        plain_seconds = time.perf_counter() - started

        started = time.perf_counter()
        build_image_cache(folder, names, size, folder / "cache.npy", folder / "index.tsv", workers=workers)
        cache_seconds = time.perf_counter() - started

        assert np.array_equal(np.load(folder / "cache.npy"), baseline), "cache differs from the plain loop"
    print(f"image cache: {images} BMPs 450x450 -> {size}x{size}, {os.cpu_count()} CPUs")
    print(f"  plain PIL loop (1 process) : {images / plain_seconds:8.1f} images/s")
    print(f"  build_image_cache ({workers} workers): {images / cache_seconds:8.1f} images/s")
    print(f"  speed-up                   : {plain_seconds / cache_seconds:8.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sections = parser.add_subparsers(dest="section", required=True)
    cache = sections.add_parser("cache", help="decode+resize cache builder vs a plain PIL loop")
    cache.add_argument("--images", type=int, default=600)
    cache.add_argument("--size", type=int, default=224)
    cache.add_argument("--workers", type=int, default=os.cpu_count())
    args = parser.parse_args()
    if args.section == "cache":
        benchmark_cache(args.images, args.size, args.workers)


if __name__ == "__main__":
    main()
