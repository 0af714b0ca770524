"""Rule generate_demo_archive: a synthetic archive in the C-NMC layout. params: spec (data.demo)."""

from leukemia_dtl.demo_data import DemoSpec, write_demo_archive
from leukemia_dtl.rule_runner import run_rule

run_rule(snakemake, lambda: write_demo_archive(snakemake.output.archive, DemoSpec(**snakemake.params.spec)))
