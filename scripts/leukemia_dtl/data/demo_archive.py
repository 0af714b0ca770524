"""A synthetic archive with the exact C-NMC 2019 layout and naming, for the demo and the tests.

Classes differ in morphology as blasts do: ALL cells have a nucleus filling more of the cell and a finer
chromatin texture. Every subject also gets its own stain colour, so a model can partly recognise subjects;
an image-level split then scores higher than a subject-disjoint one, as on the real data.
"""

from __future__ import annotations

import io
import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from leukemia_dtl.core.fileio import atomic_path
from leukemia_dtl.core.vocabulary import DATASET_DIR, NEGATIVE_CLASS, POSITIVE_CLASS
from leukemia_dtl.data import layout

log = logging.getLogger(__name__)

LABEL_CODE_OF = {label: code for code, label in layout.PRELIM_LABEL_CODES.items()}


@dataclass(frozen=True)
class DemoSpec:
    all_subjects_per_fold: int = 3
    hem_subjects_per_fold: int = 2
    images_per_subject: int = 16
    prelim_subjects_per_class: int = 2
    final_images: int = 20
    bmp_size: int = 96
    corrupt_images: int = 1
    seed: int = 7


@dataclass(frozen=True)
class Subject:
    name: str
    label: str
    stain: np.ndarray


def render_cell(rng: np.random.Generator, label: str, stain: np.ndarray, size: int) -> np.ndarray:
    """One segmented cell centred on black, as uint8 RGB."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    centre = size / 2 + rng.normal(0, size * 0.02, 2)
    cell_radius = size * rng.uniform(0.30, 0.40)
    nucleus_fraction = rng.normal(0.74 if label == POSITIVE_CLASS else 0.54, 0.07)
    nucleus_radius = cell_radius * np.clip(nucleus_fraction, 0.3, 0.92)
    elongation = rng.uniform(0.85, 1.15)
    distance = np.hypot((xx - centre[0]) * elongation, (yy - centre[1]) / elongation)
    # Blast chromatin is fine-grained; mature lymphocyte chromatin is clumped (coarser).
    grain = 1 if label == POSITIVE_CLASS else 6
    coarse = rng.normal(0, 1, (size // grain + 1, size // grain + 1))
    texture = np.kron(coarse, np.ones((grain, grain)))[:size, :size]
    cytoplasm = np.array([200, 170, 215], np.float32)
    nucleus = np.array([95, 55, 140], np.float32)
    image = np.zeros((size, size, 3), np.float32)
    in_cell = distance <= cell_radius
    in_nucleus = distance <= nucleus_radius
    image[in_cell] = cytoplasm
    image[in_nucleus] = nucleus + 28 * texture[in_nucleus, None]
    image[in_cell] *= stain
    image[in_cell] += rng.normal(0, 6, (in_cell.sum(), 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def bmp_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="BMP")
    return buffer.getvalue()


def _make_subjects(rng: np.random.Generator, count: int, label: str, first_id: int) -> list[Subject]:
    subjects = []
    for offset in range(count):
        number = first_id + offset
        # The real archive writes some healthy subjects with a lower-case h.
        name = str(number) if label == POSITIVE_CLASS else f"{'h' if number % 3 == 0 else 'H'}{number}"
        subjects.append(Subject(name, label, rng.uniform(0.7, 1.3, 3).astype(np.float32)))
    return subjects


def _subject_images(rng, subject: Subject, spec: DemoSpec):
    for image_number in range(1, spec.images_per_subject + 1):
        cell_number = 1 + image_number % 3
        name = f"UID_{subject.name}_{image_number}_{cell_number}_{subject.label.lower()}.bmp"
        yield name, bmp_bytes(render_cell(rng, subject.label, subject.stain, spec.bmp_size))


def _write_entry(zf: zipfile.ZipFile, name: str, data: bytes | str) -> None:
    # A fixed timestamp (zipfile stamps the current time): the same spec gives the same bytes, so a rerun
    # reproduces the archive and its checksum.
    entry = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    entry.external_attr = 0o644 << 16
    zf.writestr(entry, data)


def write_demo_archive(archive: str | Path, spec: DemoSpec) -> dict[str, int]:
    """Write the synthetic C-NMC zip atomically; return how many images went to each part."""
    rng = np.random.default_rng(spec.seed)
    counts: dict[str, int] = {}
    next_id = 1
    with atomic_path(archive) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
        corrupt_left = spec.corrupt_images
        for fold in layout.TRAINING_FOLDS:
            fold_subjects = _make_subjects(rng, spec.all_subjects_per_fold, POSITIVE_CLASS, next_id)
            next_id += spec.all_subjects_per_fold
            fold_subjects += _make_subjects(rng, spec.hem_subjects_per_fold, NEGATIVE_CLASS, next_id)
            next_id += spec.hem_subjects_per_fold
            for subject in fold_subjects:
                for name, data in _subject_images(rng, subject, spec):
                    if corrupt_left > 0:
                        # A truncated file, as a broken download or disk leaves it.
                        data, corrupt_left = data[: len(data) // 3], corrupt_left - 1
                    _write_entry(zf, f"{DATASET_DIR}/training_data/{fold}/{subject.label.lower()}/{name}", data)
                    counts[fold] = counts.get(fold, 0) + 1

        prelim_subjects = _make_subjects(rng, spec.prelim_subjects_per_class, POSITIVE_CLASS, next_id)
        next_id += spec.prelim_subjects_per_class
        prelim_subjects += _make_subjects(rng, spec.prelim_subjects_per_class, NEGATIVE_CLASS, next_id)
        next_id += spec.prelim_subjects_per_class
        prelim = [(name, data, s.label) for s in prelim_subjects for name, data in _subject_images(rng, s, spec)]
        order = rng.permutation(len(prelim))
        rows = [",".join(layout.PRELIM_LABEL_COLUMNS)]
        for new_number, index in enumerate(order, start=1):
            original_name, data, label = prelim[index]
            _write_entry(zf, f"{DATASET_DIR}/{layout.PRELIM_DIR}/{new_number}.bmp", data)
            rows.append(f"{original_name},{new_number}.bmp,{LABEL_CODE_OF[label]}")
        _write_entry(zf, f"{DATASET_DIR}/{layout.PRELIM_LABELS}", "\n".join(rows) + "\n")
        counts["prelim"] = len(prelim)

        final_subjects = _make_subjects(rng, 2, POSITIVE_CLASS, next_id) + _make_subjects(
            rng, 2, NEGATIVE_CLASS, next_id + 2
        )
        for number in range(1, spec.final_images + 1):
            subject = final_subjects[number % len(final_subjects)]
            pixels = render_cell(rng, subject.label, subject.stain, spec.bmp_size)
            _write_entry(zf, f"{DATASET_DIR}/{layout.FINAL_DIR}/{number}.bmp", bmp_bytes(pixels))
        counts["final"] = spec.final_images
    log.info("demo archive %s: %s", archive, counts)
    return counts
