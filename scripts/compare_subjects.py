"""Rule compare_subjects: each model against the first configured one with the subject as the unit: every Table 1
metric's difference with a paired subject-cluster bootstrap interval and p-value per held-out subset and
prediction set, and McNemar's test on the seed ensembles' calls (leukemia_dtl.evaluate.subject_comparison).

input:  ensemble (the ensembles' prediction TSVs), seeds (the seeds' prediction TSVs)
output: subject_comparison, ensemble_mcnemar (results/stats/{scheme}/<name>.tsv)
params: ensemble_keys ((model, kind, subset) of each ensemble file, in order),
        seed_keys ((model, kind, seed, subset) of each seed file, in order), models, statistics
"""

from leukemia_dtl.core.fileio import write_tsv
from leukemia_dtl.core.rule_runner import run_rule
from leukemia_dtl.evaluate.subject_comparison import ensemble_mcnemar, subject_comparison


def main(snakemake):
    params, statistics = snakemake.params, snakemake.params.statistics
    ensemble_files = dict(zip(map(tuple, params.ensemble_keys), snakemake.input.ensemble, strict=True))
    seed_files = dict(zip(map(tuple, params.seed_keys), snakemake.input.seeds, strict=True))
    comparison = subject_comparison(
        seed_files,
        ensemble_files,
        params.models,
        threshold=statistics["threshold"],
        n_bootstrap=statistics["bootstrap_resamples"],
        seed=statistics["seed"],
        confidence=statistics["confidence"],
        min_subjects_per_class=statistics["min_subjects_per_class"],
    )
    mcnemar = ensemble_mcnemar(
        ensemble_files,
        params.models,
        threshold=statistics["threshold"],
        mcnemar_exact_below=statistics["mcnemar_exact_below"],
    )
    write_tsv(comparison, snakemake.output.subject_comparison)
    write_tsv(mcnemar, snakemake.output.ensemble_mcnemar)


run_rule(snakemake, main)
