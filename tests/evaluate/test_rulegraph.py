"""The method figure: the rule graph of the run itself, from its own Snakefile and config."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from leukemia_dtl.evaluate.rulegraph import applied_configfiles, parse_rulegraph, plot_rulegraph, snakemake_rulegraph

# Parses the workflow as `snakemake [-d WORKDIR] --configfile FILE…` started in the repository does, and prints the
# plot_rulegraph rule's params as JSON: the values a run records and compares to decide reruns.
_PRINT_RULEGRAPH_PARAMS = """
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

workdir, *configfiles = sys.argv[1:]
with SnakemakeApi(OutputSettings()) as api:
    workflow_api = api.workflow(
        resource_settings=ResourceSettings(),
        config_settings=ConfigSettings(configfiles=[Path(path) for path in configfiles]),
        snakefile=Path("Snakefile"),
        workdir=Path(workdir),
    )
    # The parsed workflow is no public API, but it is what the command line parses too.
    print(json.dumps(dict(workflow_api._workflow.get_rule("plot_rulegraph").params.items()), default=str))
"""


def rulegraph_params(workdir: Path | str, *configfiles: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", _PRINT_RULEGRAPH_PARAMS, str(workdir), *configfiles],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


def rule_names(configfiles: list[str], config_args: tuple[str, ...] = ()) -> set[str]:
    nodes, _ = parse_rulegraph(snakemake_rulegraph(REPO, "Snakefile", configfiles, config_args))
    return set(nodes.values())


@pytest.mark.workflow
@pytest.mark.parametrize(
    ("workdir", "configfiles", "applied"),
    [
        # The Snakefile's configfile: config/config.yaml is applied first, the overlay over it.
        (".", ["config/demo.yaml"], ["config/config.yaml", "config/demo.yaml"]),
        # Listing the base again changes nothing, and so keeps the params.
        (".", ["config/config.yaml", "config/demo.yaml"], ["config/config.yaml", "config/demo.yaml"]),
        # With another working directory the Snakefile's configfile: is not found there, so only the overlay applies.
        ("{tmp_path}", ["config/demo.yaml"], ["config/demo.yaml"]),
    ],
)
def test_the_rule_gets_the_runs_config_files_in_applied_order_as_relative_paths(
    tmp_path, workdir, configfiles, applied
):
    params = rulegraph_params(workdir.format(tmp_path=tmp_path), *configfiles)
    assert params == {"snakefile": "Snakefile", "configfiles": applied, "config_args": []}


def test_config_files_are_ordered_as_snakemake_applies_them(tmp_path, monkeypatch):
    workflow_dir = tmp_path / "project"
    workflow_dir.mkdir()
    monkeypatch.chdir(workflow_dir)
    # workflow.configfiles lists the --configfile files (made absolute) before the Snakefile's configfile:.
    command_line = [workflow_dir / "mine.yaml", tmp_path / "elsewhere" / "site.yaml"]
    listed = [*command_line, "config/config.yaml"]
    assert applied_configfiles(listed, command_line, workflow_dir) == [
        "config/config.yaml",
        "mine.yaml",
        "../elsewhere/site.yaml",
    ]
    assert applied_configfiles(listed, command_line, workflow_dir, replace_workflow_config=True) == [
        "mine.yaml",
        "../elsewhere/site.yaml",
    ]


@pytest.mark.workflow
def test_the_demos_rule_graph_shows_the_demos_steps():
    # What the rule draws for `snakemake --configfile config/demo.yaml`: the graph from the rule's own params.
    params = rulegraph_params(".", "config/demo.yaml")
    nodes, _ = parse_rulegraph(
        snakemake_rulegraph(REPO, params["snakefile"], params["configfiles"], params["config_args"])
    )
    names = set(nodes.values())
    assert {"generate_demo_archive", "tune_model", "predict_model", "challenge_submission"} <= names
    assert not names & {"download_kaggle", "fetch_weights"}


@pytest.mark.workflow
def test_rule_graph_of_the_paper_config_has_the_method_steps_in_order():
    nodes, edges = parse_rulegraph(snakemake_rulegraph(REPO, "Snakefile", ["config/config.yaml"]))
    names = set(nodes.values())
    assert {"download_kaggle", "inventory", "split_dataset", "train_model", "predict_model", "compare_models"} <= names
    assert "all" not in names and "generate_demo_archive" not in names
    named_edges = {(nodes[a], nodes[b]) for a, b in edges}
    assert ("train_model", "predict_model") in named_edges and ("split_dataset", "train_model") in named_edges
    figure = plot_rulegraph(
        "\n".join(f'{i}[label = "{n}"];' for i, n in nodes.items()) + "\n" + "\n".join(f"{a} -> {b}" for a, b in edges)
    )
    assert {text.get_text() for text in figure.axes[0].texts if text.get_text()} == names


@pytest.mark.workflow
def test_rule_graph_reads_an_overlay_and_config_arguments_on_top_of_its_base(tmp_path):
    # Users layer config files (`--configfile config/demo.yaml mine.yaml`) and --config values; the overlay
    # alone does not validate, so the rule graph gets every file, in order, and the arguments after them.
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("seeds: [0]\nmodels:\n  vgg19:\n    epochs: 2\n")
    configs = ["config/demo.yaml", str(overlay)]
    assert "generate_demo_archive" in rule_names(configs)
    names = rule_names(configs, ("data={source: kaggle}",))
    assert "download_kaggle" in names and "generate_demo_archive" not in names
