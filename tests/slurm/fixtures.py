"""pytest fixture ``slurm_cluster``: a session-wide local Slurm cluster (see cluster.py).

Import it into tests/conftest.py (tests/ is on sys.path there, because tests/ has no __init__.py)::

    from slurm.fixtures import slurm_cluster  # noqa: F401

If Slurm cannot be installed or started (not root, no apt mirror, a daemon fails) the tests that
use the fixture are skipped with the reason - except when the environment variable CI is "true":
then they fail, so a CI job cannot pass by skipping them.
"""

from __future__ import annotations

import os

import pytest

from .cluster import LocalSlurmCluster, SlurmClusterError


def _unavailable(reason: str):
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"local Slurm test cluster unavailable (CI=true, so this is an error): {reason}", pytrace=False)
    pytest.skip(f"local Slurm test cluster unavailable: {reason}")


@pytest.fixture(scope="session")
def slurm_cluster():
    """A running LocalSlurmCluster (node `localhost`, partitions cpu/gpu, fake GPU); stopped at the end."""
    cluster = LocalSlurmCluster()
    try:
        cluster.start()
    except (SlurmClusterError, OSError) as exc:
        cluster.stop()
        _unavailable(str(exc))
    except BaseException:
        cluster.stop()
        raise
    try:
        yield cluster
    finally:
        cluster.stop()
