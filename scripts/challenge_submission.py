"""Rule challenge_submission: the C-NMC 2019 final-phase submission of one model's seeds
(leukemia_dtl.model.challenge_submission.challenge_submission).

input:   models (the seeds' model.keras), train_stats (their train_stats.json, same order: each seed's batch
         size), images, index (the final-phase image cache files)
output:  submission (isbi_valid.predict: one 0/1 line per image, 1.bmp first, 1 = ALL),
         probabilities (final_phase.tsv: image, p_all, call)
params:  test_time_augmentation (bool), threshold (ALL where the seeds' mean p_all >= threshold)
threads: CPU threads the backend may use
resources: require_gpu (config require_gpu: stop at once if a given GPU is not usable)
"""

from leukemia_dtl.core.rule_runner import run_rule
from leukemia_dtl.core.train_stats import read_train_stats


def main(snakemake):
    from leukemia_dtl.model.backend import check_gpu
    from leukemia_dtl.model.challenge_submission import challenge_submission
    from leukemia_dtl.model.inputs import cache_dir_of

    check_gpu(snakemake.resources.require_gpu)
    challenge_submission(
        model_paths=list(snakemake.input.models),
        batch_sizes=[read_train_stats(path)["batch_size"] for path in snakemake.input.train_stats],
        cache=cache_dir_of(snakemake.input.images, snakemake.input.index),
        threshold=snakemake.params.threshold,
        submission_path=snakemake.output.submission,
        probabilities_path=snakemake.output.probabilities,
        test_time_augmentation=snakemake.params.test_time_augmentation,
        threads=snakemake.threads,
    )


run_rule(snakemake, main)
