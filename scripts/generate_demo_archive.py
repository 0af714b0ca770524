"""Rule generate_demo_archive: a synthetic archive in the C-NMC layout. params: spec (data.demo)."""

from leukemia_dtl.core.rule_runner import run_rule
from leukemia_dtl.data.demo_archive import DemoSpec, write_demo_archive


def main(snakemake):
    write_demo_archive(snakemake.output.archive, DemoSpec(**snakemake.params.spec))


run_rule(snakemake, main)
