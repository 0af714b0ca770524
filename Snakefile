# Soladoye et al. (2025) reproduced and extended: VGG-19 vs EfficientNet-B3 on C-NMC 2019.
# Run: snakemake --cores all (demo: --configfile config/demo.yaml); on Slurm: --profile profiles/slurm.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"


from leukemia_dtl.core.run_lock import (
    record_snakemake_lock_owner,
    release_locks_of_dead_snakemake,
)

# A Snakemake killed with SIGKILL leaves its locks behind: the same command again then just works.
if workflow.is_main_process:
    release_locks_of_dead_snakemake()


onstart:
    record_snakemake_lock_owner()


wildcard_constraints:
    scheme="|".join([*SPLIT_SCHEMES, *FOLD_ROTATIONS]),
    model="|".join(config["models"]),
    seed=r"\d+",
    size=r"\d+",
    subset="|".join(PREDICTED_SUBSETS),
    prediction_set=rf"(seed\d+|{ENSEMBLE})(/{TTA})?",


include: "rules/data.smk"
include: "rules/tuning.smk"
include: "rules/models.smk"
include: "rules/evaluate.smk"
include: "rules/apply.smk"


rule all:
    default_target: True
    input:
        final_targets(),
