# Config validation and every path of the workflow: each path is written here once, and rules and
# targets take them from here.
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

validate(config, "../config/schema.yaml", set_default=True)


def _check_data_source(data):
    source = data["source"]
    if source == "archive" and not data["archive"]:
        raise WorkflowError(
            "data.source is 'archive' but data.archive is not set: give the path of the Kaggle zip."
        )
    if source == "directory" and not data["directory"]:
        raise WorkflowError(
            "data.source is 'directory' but data.directory is not set: give the folder that holds C-NMC_Leukemia/."
        )


_check_data_source(config["data"])

DATASET_DIR = "C-NMC_Leukemia"
RESULTS = "results"
KAGGLE_ARCHIVE = f"{RESULTS}/data/download/leukemia-classification.zip"
KAGGLE_CHECKSUM = f"{RESULTS}/data/download/leukemia-classification.zip.sha256"
DEMO_ARCHIVE = f"{RESULTS}/data/demo/C-NMC_Leukemia-demo.zip"
EXTRACTED = f"{RESULTS}/data/extracted"
ARCHIVE_CHECKSUM = f"{RESULTS}/data/archive.sha256"
INVENTORY = f"{RESULTS}/data/inventory.tsv"
REJECTED = f"{RESULTS}/data/rejected.tsv"
KEPT = f"{RESULTS}/data/kept.tsv"
EXCLUDED = f"{RESULTS}/data/excluded.tsv"
EXCLUSION_SUMMARY = f"{RESULTS}/data/exclusion_summary.tsv"
SPLIT = f"{RESULTS}/splits/{{scheme}}.tsv"
LEAKAGE = f"{RESULTS}/splits/{{scheme}}_leakage.tsv"
CACHE_IMAGES = f"{RESULTS}/cache/{{size}}px/images.npy"
CACHE_INDEX = f"{RESULTS}/cache/{{size}}px/index.tsv"


def log_file(name):
    """Log path; ``name`` is the rule's name with its wildcards as folders, e.g. "split_dataset/{scheme}"."""
    return f"{RESULTS}/logs/{name}.log"


def benchmark_file(name):
    return f"{RESULTS}/benchmarks/{name}.tsv"


def archive_file():
    """The zip that extract_archive unpacks, by data.source."""
    return {
        "kaggle": KAGGLE_ARCHIVE,
        "demo": DEMO_ARCHIVE,
        "archive": config["data"]["archive"],
    }[config["data"]["source"]]


def dataset_folder():
    """The folder holding C-NMC_Leukemia/: the user's own copy, or the extracted archive."""
    if config["data"]["source"] == "directory":
        return config["data"]["directory"]
    return EXTRACTED


def dataset_root():
    return f"{dataset_folder()}/{DATASET_DIR}"


def cache_images(size=None):
    return CACHE_IMAGES.format(size=size or config["image_size"])


def cache_index(size=None):
    return CACHE_INDEX.format(size=size or config["image_size"])


def data_targets():
    schemes = config["split"]["schemes"]
    return [
        INVENTORY,
        REJECTED,
        EXCLUSION_SUMMARY,
        *expand(SPLIT, scheme=schemes),
        *expand(LEAKAGE, scheme=schemes),
        cache_images(),
        cache_index(),
    ]


def final_targets():
    return data_targets()
