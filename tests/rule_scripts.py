"""Running a rule script without Snakemake: the ``snakemake`` object a script receives, built from plain dicts, so a
unit test checks that the script hands its rule's params on to the package."""

from __future__ import annotations

import runpy
from types import SimpleNamespace

from snakemake.iocontainers import Namedlist

from conftest import REPO


def run_rule_script(script: str, **directives) -> None:
    """Run ``scripts/<script>`` as Snakemake would, with ``directives`` (input, output, params, wildcards: dicts)
    as its ``snakemake`` object's Namedlists."""
    snakemake = SimpleNamespace(
        **{name: Namedlist(fromdict=entries) for name, entries in directives.items()}, log=Namedlist(), threads=1
    )
    runpy.run_path(str(REPO / "scripts" / script), init_globals={"snakemake": snakemake})
