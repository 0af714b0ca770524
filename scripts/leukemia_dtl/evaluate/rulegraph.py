"""The workflow's rule graph as the method figure (the paper's Fig. 1), drawn without Graphviz.

Snakemake writes the graph in DOT; Graphviz is a system package a cluster user may not have, so the
few dozen nodes are laid out here in layers by longest path from the inputs.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_NODE = re.compile(r'^\s*(\d+)\[label = "([^"]+)"', re.MULTILINE)
_EDGE = re.compile(r"^\s*(\d+) -> (\d+)", re.MULTILINE)


def applied_configfiles(
    listed: Sequence[str | os.PathLike],
    command_line: Sequence[str | os.PathLike],
    workflow_dir: str | os.PathLike,
    replace_workflow_config: bool = False,
) -> list[str]:
    """The config files a Snakemake 9 run applied, first to last (the last one wins per key), relative to
    ``workflow_dir`` so that a moved project keeps them; call it where the run parses its Snakefile.

    ``listed`` is ``workflow.configfiles``: the --configfile files (``command_line``, made absolute) first, then
    each ``configfile:`` of the Snakefile that was found, relative to the working directory. Snakemake applies
    the Snakefile's first and lays the command line's over them; --replace-workflow-config drops the Snakefile's.
    A file applied twice counts where it was applied last, as that is where its values win."""
    from_snakefile = [] if replace_workflow_config else list(listed[len(command_line) :])
    relative = [os.path.relpath(os.path.abspath(path), workflow_dir) for path in [*from_snakefile, *command_line]]
    return [path for index, path in enumerate(relative) if path not in relative[index + 1 :]]


def snakemake_rulegraph(
    workflow_dir: str | os.PathLike,
    snakefile: str | os.PathLike,
    configfiles: Sequence[str | os.PathLike],
    config_args: Sequence[str] = (),
) -> str:
    """The DOT text of ``snakemake --rulegraph`` for the Snakefile, with exactly the config of the run that
    applied ``configfiles`` (in that order) and ``config_args`` (its --config KEY=VALUE arguments); relative
    paths are read from ``workflow_dir``."""
    workflow_dir = Path(workflow_dir)
    command = [sys.executable, "-m", "snakemake", "-s", str(workflow_dir / snakefile)]
    command += ["--rulegraph", "--nolock", "--quiet", "all"]
    # One flag with every file (a repeated --configfile keeps only the last); the Snakefile's own configfile:
    # is replaced, as the list already holds it where the run applied it.
    command += ["--configfile", *(str(workflow_dir / path) for path in configfiles), "--replace-workflow-config"]
    if config_args:
        command += ["--config", *config_args]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"snakemake --rulegraph failed:\n{result.stderr[-3000:]}")
    return result.stdout


# Bookkeeping rules that are no step of the method.
_NOT_METHOD = {"all", "plot_rulegraph"}


def parse_rulegraph(dot: str) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """Rule names by node id, and the edges (from, to) of a Snakemake DOT graph, without bookkeeping rules."""
    nodes = {node: name for node, name in _NODE.findall(dot) if name not in _NOT_METHOD}
    return nodes, [(a, b) for a, b in _EDGE.findall(dot) if a in nodes and b in nodes]


def plot_rulegraph(dot: str) -> Figure:
    # Imported here: rules/evaluate.smk imports this module for applied_configfiles, so a module-level matplotlib
    # would add its import (0.4 s) to every start of Snakemake, each dry-run and each Slurm job included.
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyBboxPatch

    nodes, edges = parse_rulegraph(dot)
    parents = defaultdict(list)
    for source, target in edges:
        parents[target].append(source)
    depth: dict[str, int] = {}

    def layer(node: str) -> int:
        if node not in depth:
            depth[node] = 1 + max((layer(parent) for parent in parents[node]), default=-1)
        return depth[node]

    layers = defaultdict(list)
    for node in sorted(nodes, key=lambda n: nodes[n]):
        layers[layer(node)].append(node)
    width = max(len(members) for members in layers.values())
    figure = Figure(figsize=(max(6.0, 2.3 * width), 0.9 * len(layers) + 0.6))
    axes = figure.add_subplot()
    position = {}
    for row, members in layers.items():
        for column, node in enumerate(members):
            position[node] = ((column + 0.5) * width / len(members), -row)
    for source, target in edges:
        axes.annotate(
            "",
            xy=position[target],
            xytext=position[source],
            arrowprops={"arrowstyle": "->", "color": "0.4", "shrinkA": 11, "shrinkB": 11},
        )
    for node, (x, y) in position.items():
        axes.add_patch(
            FancyBboxPatch(
                (x - 0.45, y - 0.17), 0.9, 0.34, boxstyle="round,pad=0.02", facecolor="#e8f0fa", edgecolor="#0072B2"
            )
        )
        axes.text(x, y, nodes[node], ha="center", va="center", fontsize=9)
    axes.set_xlim(-0.1, width + 0.1)
    axes.set_ylim(-len(layers) + 0.5, 0.5)
    axes.axis("off")
    axes.set_title("Workflow rules (snakemake --rulegraph)", fontsize=11)
    return figure
