"""Every data.source as a user sets it: dry-runs for all four, real runs up to the splits from a local
archive and from a local folder, and a folder whose images change makes the next run redo the inventory."""

import shutil

import pytest
import yaml

from conftest import planned_jobs, run_snakemake
from leukemia_dtl.core.fileio import read_tsv
from leukemia_dtl.core.vocabulary import DATASET_DIR, PATIENT_SPLIT, RANDOM_SPLIT, TRAINING_SPLITS
from leukemia_dtl.data.demo_archive import DemoSpec, write_demo_archive

pytestmark = pytest.mark.workflow

SPLITS = [f"results/splits/{scheme}.tsv" for scheme in TRAINING_SPLITS]


@pytest.fixture(scope="module")
def user_data(tmp_path_factory):
    """What a user downloaded in a browser: the zip, and the same zip unpacked into a folder."""
    folder = tmp_path_factory.mktemp("downloads")
    archive = folder / "leukemia-classification.zip"
    write_demo_archive(archive, DemoSpec(images_per_subject=6, bmp_size=48, final_images=5))
    shutil.unpack_archive(archive, folder / "unpacked")
    return archive, folder / "unpacked"


def source_config(tmp_path, **data) -> str:
    """The demo config with ``data`` over its data block, as a YAML overlay file."""
    overlay = tmp_path / "source.yaml"
    overlay.write_text(yaml.safe_dump({"data": data}))
    return str(overlay)


def plan(workdir, overlay, *targets):
    result = run_snakemake("-n", *targets, "--cores", "1", "--configfile", "config/demo.yaml", overlay, workdir=workdir)
    assert result.returncode == 0, result.stdout + result.stderr
    return planned_jobs(result.stdout)


@pytest.mark.parametrize(
    "source, first_rules",
    [
        ("kaggle", {"download_kaggle", "extract_archive"}),
        ("archive", {"extract_archive"}),
        ("directory", set()),
        ("demo", {"generate_demo_archive", "extract_archive"}),
    ],
)
def test_every_source_plans_the_whole_workflow(tmp_path, user_data, source, first_rules):
    archive, folder = user_data
    data = {"source": source, "archive": str(archive), "directory": str(folder)}
    jobs = plan(tmp_path, source_config(tmp_path, **data))
    acquiring = {"download_kaggle", "generate_demo_archive", "extract_archive"}
    assert acquiring & set(jobs) == first_rules
    assert (
        jobs["inventory"] == 1
        and jobs["split_dataset"] == len([RANDOM_SPLIT, PATIENT_SPLIT])
        and jobs["train_model"] == 8
    )


def test_a_directory_without_the_dataset_folder_is_refused(tmp_path):
    result = run_snakemake(
        "-n",
        "--configfile",
        "config/demo.yaml",
        source_config(tmp_path, source="directory", directory=str(tmp_path)),
        workdir=tmp_path,
    )
    assert result.returncode != 0
    assert f"holds no {DATASET_DIR}/ folder" in result.stdout + result.stderr


def run_to_splits(workdir, overlay):
    result = run_snakemake(*SPLITS, "--cores", "2", "--configfile", "config/demo.yaml", overlay, workdir=workdir)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return {scheme: read_tsv(workdir / path) for scheme, path in zip(TRAINING_SPLITS, SPLITS, strict=True)}


def test_archive_and_directory_give_the_same_splits(tmp_path, user_data):
    archive, folder = user_data
    from_archive = run_to_splits(tmp_path / "a", source_config(tmp_path, source="archive", archive=str(archive)))
    from_folder = run_to_splits(tmp_path / "d", source_config(tmp_path, source="directory", directory=str(folder)))
    assert not (tmp_path / "d" / "results" / "data" / "extracted").exists()
    for scheme in TRAINING_SPLITS:
        assert len(from_archive[scheme]) > 100
        assert from_archive[scheme].equals(from_folder[scheme])


def test_a_changed_image_folder_reruns_the_inventory(tmp_path, user_data):
    _, original = user_data
    folder = tmp_path / "copy"
    shutil.copytree(original, folder)
    overlay = source_config(tmp_path, source="directory", directory=str(folder))
    run_to_splits(tmp_path / "run", overlay)
    assert plan(tmp_path / "run", overlay, *SPLITS) == {}

    hem = folder / DATASET_DIR / "training_data" / "fold_1" / "hem"
    images = sorted(hem.iterdir())
    changes = {
        "replaced": lambda: images[0].write_bytes(images[1].read_bytes()),
        "added": lambda: shutil.copy(images[1], hem / "UID_H99_1_1_hem.bmp"),
        "removed": lambda: images[2].unlink(),
    }
    for change, apply in changes.items():
        apply()
        jobs = plan(tmp_path / "run", overlay, *SPLITS)
        assert jobs.get("inventory") == 1, f"image {change}: {jobs}"
        run_to_splits(tmp_path / "run", overlay)
