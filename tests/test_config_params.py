"""Every config key that can change an output must reach its rule through `params:` (or decide inputs or
targets), so that changing it reruns exactly what it affects."""

import re

import yaml

from conftest import REPO

# Keys that change outputs without being params: they pick input files, wildcards or targets, which
# Snakemake tracks by themselves.
NOT_PARAMS = {
    "data.source": "selects the archive rule and the extracted folder (inputs)",
    "data.archive": "is the extract rule's input file",
    "data.directory": "is the inventory's input folder",
    "split.schemes": "are the {scheme} wildcards of the targets",
    "seeds": "are the {seed} wildcards of the targets",
    "hyperparameters": "adds the tuning selection to the training jobs' inputs",
    "require_gpu": "is a resource of the GPU rules: whether a job may run without a GPU, never what it computes",
    "gpu_request": "is a resource of the GPU rules: how they ask Slurm for a GPU, never what they compute",
    "classify.input": "is the classify rule's input folder",
    "logging.tensorboard": "adds the TensorBoard folder to the training jobs' outputs",
    "evaluation.tta": "adds the TTA sets to the prediction jobs' outputs (and their params' kinds) and to the "
    "targets, and picks the final-phase predictions that the submission averages",
}
CONFIG_REFERENCE = re.compile(r'config((?:\["\w+"\])+)')


def schema_leaves(properties, prefix=""):
    for key, spec in properties.items():
        path = f"{prefix}{key}"
        if "properties" in spec:
            yield from schema_leaves(spec["properties"], f"{path}.")
        else:
            yield path


def config_paths_in_params():
    paths = set()
    for smk in (REPO / "rules").glob("*.smk"):
        in_params = False
        for line in smk.read_text().splitlines():
            stripped = line.strip()
            if stripped.endswith(":") and line.startswith("    ") and not line.startswith("        "):
                in_params = stripped == "params:"
            elif in_params:
                for reference in CONFIG_REFERENCE.findall(line):
                    paths.add(".".join(re.findall(r'"(\w+)"', reference)))
    return paths


def test_every_output_changing_key_is_a_param_or_an_input():
    schema = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())
    passed = config_paths_in_params()
    uncovered = [
        leaf
        for leaf in schema_leaves(schema["properties"])
        if leaf not in NOT_PARAMS and not any(leaf == path or leaf.startswith(path + ".") for path in passed)
    ]
    assert uncovered == [], f"config keys neither passed as params nor listed in NOT_PARAMS: {uncovered}"


def test_the_checker_sees_params():
    assert {"statistics", "augmentation", "image_size", "models"} <= config_paths_in_params()


def rule_param_names():
    """(rules file, param name) of every rule's `params:` entry."""
    for smk in sorted((REPO / "rules").glob("*.smk")):
        in_params = False
        for line in smk.read_text().splitlines():
            if line.startswith("    ") and not line.startswith("        ") and line.strip().endswith(":"):
                in_params = line.strip() == "params:"
            elif in_params and (name := re.match(r"^ {8}(\w+)=", line)):
                yield smk.name, name.group(1)


def test_no_rule_passes_keys_beside_its_input_files():
    """A rule that reads several runs' files lists only the files; its script reads each file's run from its path
    (leukemia_dtl.core.run_paths), so no list of keys has to stay parallel to an input list."""
    names = list(rule_param_names())
    assert ("evaluate.smk", "models") in names
    parallel = [(smk, name) for smk, name in names if name.endswith("_keys") or name in ("runs", "seeds")]
    assert parallel == []
