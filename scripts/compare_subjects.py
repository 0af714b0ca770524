"""Rule compare_subjects: each model against the first configured one with the subject as the unit: every Table 1
metric's difference with a paired subject-cluster bootstrap interval and p-value per held-out subset and
prediction set, and McNemar's test on the seed ensembles' calls (leukemia_dtl.evaluate.subject_comparison).

input:  ensemble (the ensembles' prediction TSVs), seeds (the seeds' prediction TSVs); each file's model, kind,
        seed and subset are read from its path
output: subject_comparison, ensemble_mcnemar (results/stats/{scheme}/<name>.tsv)
params: models, statistics
"""

from leukemia_dtl.core.fileio import write_tsv
from leukemia_dtl.core.rule_runner import run_rule
from leukemia_dtl.core.run_paths import files_by
from leukemia_dtl.evaluate.subject_comparison import ensemble_mcnemar, subject_comparison


def main(snakemake):
    params, statistics = snakemake.params, snakemake.params.statistics
    ensemble_files = files_by(snakemake.input.ensemble, "model", "kind", "subset")
    seed_files = files_by(snakemake.input.seeds, "model", "kind", "seed", "subset")
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
