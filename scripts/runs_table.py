"""Rule runs_table: the run overview (one row per trained run: options, training time, test and external
scores) and the provenance table (one row per run: code, config, data, software, device, Slurm job)
(leukemia_dtl.evaluate.runs.write_runs_tables).

input:  train_stats (one file per trained run: their order is the tables' row order), provenance, test_metrics,
        external_metrics (one file per run each; a file's run is read from its path)
output: runs_tsv, runs_md (results/tables/runs.{tsv,md}), provenance_tsv, provenance_md
        (results/tables/provenance.{tsv,md})
"""

from leukemia_dtl.core.rule_runner import run_rule
from leukemia_dtl.core.run_paths import files_by
from leukemia_dtl.core.vocabulary import REPORTED_SUBSETS
from leukemia_dtl.evaluate.runs import write_runs_tables


def main(snakemake):
    inputs, output = snakemake.input, snakemake.output
    run_fields = ("scheme", "model", "seed")
    runs = list(files_by(inputs.train_stats, *run_fields))

    def in_run_order(paths):
        by_run = files_by(paths, *run_fields)
        return [by_run[run] for run in runs]

    write_runs_tables(
        runs=runs,
        train_stats_paths=in_run_order(inputs.train_stats),
        provenance_paths=in_run_order(inputs.provenance),
        metrics_paths={subset: in_run_order(inputs[f"{subset}_metrics"]) for subset in REPORTED_SUBSETS},
        runs_paths=(output.runs_tsv, output.runs_md),
        provenance_table_paths=(output.provenance_tsv, output.provenance_md),
    )


run_rule(snakemake, main)
