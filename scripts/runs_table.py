"""Rule runs_table: the run overview (one row per trained run: options, training time, test and external
scores) and the provenance table (one row per run: code, config, data, software, device, Slurm job)
(leukemia_dtl.evaluate.runs.write_runs_tables).

input:  train_stats, provenance, test_metrics, external_metrics (one file per run, in params.runs order)
output: runs_tsv, runs_md (results/tables/runs.{tsv,md}), provenance_tsv, provenance_md
        (results/tables/provenance.{tsv,md})
params: runs (a [scheme, model, seed] per trained run)
"""

from leukemia_dtl.core.rule_runner import run_rule
from leukemia_dtl.core.vocabulary import REPORTED_SUBSETS
from leukemia_dtl.evaluate.runs import write_runs_tables


def main(snakemake):
    inputs, output = snakemake.input, snakemake.output
    write_runs_tables(
        runs=[tuple(run) for run in snakemake.params.runs],
        train_stats_paths=list(inputs.train_stats),
        provenance_paths=list(inputs.provenance),
        metrics_paths={subset: list(inputs[f"{subset}_metrics"]) for subset in REPORTED_SUBSETS},
        runs_paths=(output.runs_tsv, output.runs_md),
        provenance_table_paths=(output.provenance_tsv, output.provenance_md),
    )


run_rule(snakemake, main)
