"""Rule train_model: train one model with one seed (leukemia_dtl.model.training.train_model).

input:   split (split TSV); cache_images, cache_index (<cache_dir>/images.npy, <cache_dir>/index.tsv);
         hyperparameters (selected.yaml of the tuning, with hyperparameters: tuned); archive_checksum (the
         extracted archive's sha256 file; none with data.source: directory)
output:  model (.keras), history (history.tsv), stats (train_stats.json), provenance (provenance.json: code,
         config digest, archive, packages, device, Slurm job); tensorboard (a folder, with logging.tensorboard)
params:  model_name, model_options (the config's models.<name> entry), augmentation, image_size, seed,
         precision, deterministic, backup_dir (resume state; outside the outputs so Snakemake leaves it
         alone), keras_home (Keras cache holding the ImageNet weights)
threads: CPU threads the backend may use
resources: require_gpu (config require_gpu: stop at once if a given GPU is not usable)
"""

from pathlib import Path

import leukemia_dtl
from leukemia_dtl.core.provenance import write_run_provenance
from leukemia_dtl.core.rule_runner import run_rule

# The workflow's git checkout: Snakemake runs a copy of this script, but imports the package from the checkout.
REPOSITORY = Path(leukemia_dtl.__file__).resolve().parents[2]


def main(snakemake):
    from leukemia_dtl.model.backend import (
        backend_name,
        check_gpu,
        device_description,
        enable_determinism,
        slurm_context,
    )
    from leukemia_dtl.model.inputs import cache_dir_of
    from leukemia_dtl.model.training import TrainingOptions, train_model
    from leukemia_dtl.tuning.selection import read_selected_hyperparameters

    # First of all: under JAX, XLA reads the determinism flag only when JAX initialises, which the GPU check and
    # the device description below do (train_model's own call then finds the flag set).
    if snakemake.params.deterministic:
        enable_determinism()
    check_gpu(snakemake.resources.require_gpu)
    # Written first, so that it describes the job that trains; every output goes if the job fails.
    write_run_provenance(
        snakemake.output.provenance,
        rule_params=dict(snakemake.params.items()),
        archive_checksum_file=snakemake.input.get("archive_checksum") or None,
        device=device_description(),
        keras_backend=backend_name(),
        slurm=slurm_context(),
        repository=REPOSITORY,
    )
    # With hyperparameters: tuned, the tuning's selected.yaml overrides the model's config entry.
    selected = snakemake.input.get("hyperparameters")
    options = TrainingOptions.from_config(
        snakemake.params.model_name,
        snakemake.params.model_options,
        tuned_hyperparameters=read_selected_hyperparameters(selected) if selected else None,
    )
    train_model(
        options,
        augmentation=snakemake.params.augmentation,
        image_size=snakemake.params.image_size,
        seed=snakemake.params.seed,
        precision=snakemake.params.precision,
        deterministic=snakemake.params.deterministic,
        split_path=snakemake.input.split,
        cache_dir=cache_dir_of(snakemake.input.cache_images, snakemake.input.cache_index),
        backup_dir=snakemake.params.backup_dir,
        model_path=snakemake.output.model,
        history_path=snakemake.output.history,
        stats_path=snakemake.output.stats,
        threads=snakemake.threads,
        tensorboard_dir=snakemake.output.get("tensorboard"),
    )


run_rule(snakemake, main)
