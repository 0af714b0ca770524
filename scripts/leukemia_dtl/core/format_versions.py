"""Format versions of the outputs that later rules read back: every file of such a format carries the version its
writer wrote, and a reader refuses any other, so a file left by an older version of the workflow is rebuilt by
the rule that writes it instead of being read wrongly.

A format gets a new number when its readers can no longer read the files written before. Files from before the
stamps existed are version 1 and carry none: each format's first stamp is 2.
"""

from __future__ import annotations

import os

from leukemia_dtl.core.errors import UserError

# The JSON key, or the index column, that holds a file's format version.
FORMAT_VERSION_KEY = "format_version"
# index.tsv of a cache array (images or features): version 1 had no row checksums, or no stamp.
CACHE_INDEX_FORMAT_VERSION = 2
# The metrics JSON of each prediction set and subset.
METRICS_FORMAT_VERSION = 2
# train_stats.json of a training run: version 1 lacked keras_backend in some files and model_options in older ones.
TRAIN_STATS_FORMAT_VERSION = 2


def check_format_version(found: int | str | None, expected: int, path: str | os.PathLike, rule: str) -> None:
    """UserError naming ``path`` and the rule to force-rerun unless ``found`` (the version the file declares;
    None: it declares none) is ``expected``, the version this workflow writes and reads."""
    if found == expected:
        return
    if isinstance(found, int) and found > expected:
        raise UserError(
            f"{path} was written by a newer version of the workflow (format version {found}; this version reads "
            f"{expected}); update the workflow, or rebuild: snakemake --forcerun {rule}"
        )
    declared = "no format version" if found is None else f"format version {found!r}"
    raise UserError(
        f"{path} was written by an older version of the workflow; rebuild: snakemake --forcerun {rule} "
        f"(it has {declared}; this version reads format version {expected})."
    )
