"""The workflow's rule graph as the method figure (the paper's Fig. 1), drawn without Graphviz.

Snakemake writes the graph in DOT; Graphviz is a system package a cluster user may not have, so the
few dozen nodes are laid out here in layers by longest path from the inputs.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import defaultdict

from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

_NODE = re.compile(r'^\s*(\d+)\[label = "([^"]+)"', re.MULTILINE)
_EDGE = re.compile(r"^\s*(\d+) -> (\d+)", re.MULTILINE)


def snakemake_rulegraph(snakefile: str, configfiles: list[str]) -> str:
    """The DOT text of ``snakemake --rulegraph`` for the same Snakefile and config files."""
    command = [sys.executable, "-m", "snakemake", "-s", snakefile, "--rulegraph", "--nolock", "--quiet", "all"]
    if configfiles:
        # One flag with every file: a repeated --configfile keeps only the last, which alone may not validate.
        command += ["--configfile", *configfiles]
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
