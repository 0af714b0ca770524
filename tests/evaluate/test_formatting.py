"""The shared table formatting: mean ± sd texts, tables in two parts, and their TSV and Markdown files."""

import math

import pandas as pd

from leukemia_dtl.core.fileio import read_tsv
from leukemia_dtl.evaluate.formatting import mean_sd, mean_sd_text, model_columns, two_part_table, write_table


def test_markdown_escapes_pipes_and_right_aligns_numbers(tmp_path):
    frame = pd.DataFrame({"name": ["a|b"], "value": [0.12345]})
    write_table(frame, tmp_path / "t.tsv", tmp_path / "t.md", "T")
    assert (tmp_path / "t.md").read_text().splitlines()[2:] == [
        "| name | value |",
        "| --- | ---: |",
        "| a\\|b | 0.123 |",
    ]


def test_mean_sd_text_drops_the_sd_of_one_seed_and_says_when_there_is_no_value():
    assert mean_sd_text(*mean_sd([0.8, 0.9, None])[:2], 3) == "0.850 ± 0.071"
    assert mean_sd_text(*mean_sd([0.8])[:2], 3) == "0.800"
    assert mean_sd_text(*mean_sd([None])[:2], 2) == "n/a"


def test_a_two_part_table_shows_its_text_and_keeps_its_numbers_for_machines(tmp_path):
    rows = [
        [({"Metric": "Accuracy"}, {"metric": "accuracy"}), model_columns([0.8, 0.9], "vgg19", digits=2)],
        # A later row may leave columns out: empty text, and no seed count rather than floats.
        [({"Metric": "ROC-AUC"}, {"metric": "roc_auc"})],
    ]
    table = two_part_table(rows)
    assert table.attrs["markdown_columns"] == ["Metric", "VGG-19 (mean ± sd)"]
    assert table.columns.tolist()[2:] == ["metric", "vgg19_mean", "vgg19_sd", "vgg19_n_seeds"]
    assert table["VGG-19 (mean ± sd)"].tolist() == ["0.85 ± 0.07", ""]
    assert table["vgg19_n_seeds"].tolist()[0] == 2 and table["vgg19_n_seeds"].tolist()[1] is pd.NA
    assert math.isnan(table["vgg19_mean"].iloc[1])
    table.attrs["caption"] = "Each model's mean ± sd is over its seeds."
    write_table(table, tmp_path / "t.tsv", tmp_path / "t.md", "T")
    assert (tmp_path / "t.md").read_text().splitlines() == [
        "## T",
        "",
        "Each model's mean ± sd is over its seeds.",
        "",
        "| Metric | VGG-19 (mean ± sd) |",
        "| --- | --- |",
        "| Accuracy | 0.85 ± 0.07 |",
        "| ROC-AUC |  |",
    ]
    assert read_tsv(tmp_path / "t.tsv")["vgg19_n_seeds"].tolist() == ["2", ""]
