"""train_stats.json: stamped with its format version when written, and a file of another version refused when
read, naming the rule that rebuilds it."""

import json
import re

import pytest

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.format_versions import TRAIN_STATS_FORMAT_VERSION
from leukemia_dtl.core.train_stats import read_train_stats, write_train_stats


def test_current_train_stats_read_back_as_written(tmp_path):
    path = tmp_path / "train_stats.json"
    written = write_train_stats({"batch_size": 8, "model_options": {"epochs": 3}}, path)
    assert written == {"format_version": TRAIN_STATS_FORMAT_VERSION, "batch_size": 8, "model_options": {"epochs": 3}}
    assert read_train_stats(path) == written


@pytest.mark.parametrize("older", [{}, {"format_version": 1}], ids=["unstamped", "version 1"])
def test_train_stats_of_an_older_version_are_refused_naming_the_file_and_the_rule(tmp_path, older):
    path = tmp_path / "train_stats.json"
    path.write_text(json.dumps({**older, "batch_size": 8}))
    expected = f"{path} was written by an older version of the workflow; rebuild: snakemake --forcerun train_model ("
    with pytest.raises(UserError, match=re.escape(expected)):
        read_train_stats(path)
