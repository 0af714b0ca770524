import pytest

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.fileio import write_json
from leukemia_dtl.core.format_versions import FORMAT_VERSION_KEY, METRICS_FORMAT_VERSION
from leukemia_dtl.evaluate.result_files import (
    align_predictions,
    per_seed_metrics,
    read_keyed_metrics,
    read_metrics,
    read_predictions,
    write_metrics,
)

HEADER = "path\tsubject\tlabel\tp_all\tpred"
GOOD_ROWS = [
    "img/a.bmp\tUID_1\tALL\t0.91\tALL",
    "img/b.bmp\tUID_H2\tHEM\t0.12\tHEM",
    "img/c.bmp\tUID_3\tALL\t0.45\tHEM",
]


def _write(tmp_path, name, rows, header=HEADER):
    path = tmp_path / name
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_reads_good_file_with_probabilities_as_floats(tmp_path):
    frame = read_predictions(_write(tmp_path, "vgg19.tsv", GOOD_ROWS))
    assert frame["p_all"].tolist() == [0.91, 0.12, 0.45]
    assert frame["label"].tolist() == ["ALL", "HEM", "ALL"]
    assert frame["subject"].tolist() == ["UID_1", "UID_H2", "UID_3"]


def test_missing_column(tmp_path):
    path = _write(tmp_path, "vgg19.tsv", ["img/a.bmp\tUID_1\tALL\tALL"], header="path\tsubject\tlabel\tpred")
    with pytest.raises(UserError, match=r"vgg19\.tsv lacks column\(s\) p_all"):
        read_predictions(path)


@pytest.mark.parametrize(
    ("bad_row", "problem"),
    [
        ("img/d.bmp\tUID_4\tALL\t1.2\tALL", "outside \\[0, 1\\] on line\\(s\\) 5"),
        ("img/d.bmp\tUID_4\tALL\t-0.1\tALL", "outside \\[0, 1\\]"),
        ("img/d.bmp\tUID_4\tALL\tnan\tALL", "empty or non-numeric p_all on line\\(s\\) 5"),
        ("img/d.bmp\tUID_4\tALL\t\tALL", "empty or non-numeric p_all"),
        ("img/d.bmp\tUID_4\tall\t0.3\tHEM", "label values other than ALL or HEM .*'all'"),
        ("img/d.bmp\tUID_4\tALL\t0.3\t1", "pred values other than ALL or HEM .*'1'"),
        ("img/a.bmp\tUID_1\tALL\t0.3\tHEM", "lists image\\(s\\) 'img/a.bmp' more than once"),
    ],
)
def test_bad_rows_name_file_and_problem(tmp_path, bad_row, problem):
    path = _write(tmp_path, "effnet_seed1.tsv", [*GOOD_ROWS, bad_row])
    with pytest.raises(UserError, match=f"effnet_seed1\\.tsv .*{problem}"):
        read_predictions(path)


def test_file_without_rows(tmp_path):
    with pytest.raises(UserError, match=r"empty\.tsv has no rows"):
        read_predictions(_write(tmp_path, "empty.tsv", []))


def test_align_sorts_both_by_path(tmp_path):
    a = read_predictions(_write(tmp_path, "a.tsv", GOOD_ROWS))
    b = read_predictions(_write(tmp_path, "b.tsv", GOOD_ROWS[::-1]))
    aligned_a, aligned_b = align_predictions(a, b, "a.tsv", "b.tsv")
    assert aligned_a["path"].tolist() == aligned_b["path"].tolist() == ["img/a.bmp", "img/b.bmp", "img/c.bmp"]
    assert aligned_b["p_all"].tolist() == [0.91, 0.12, 0.45]


def test_align_rejects_different_images_naming_both_files(tmp_path):
    a = read_predictions(_write(tmp_path, "vgg19.tsv", GOOD_ROWS))
    b = read_predictions(_write(tmp_path, "effnet.tsv", [*GOOD_ROWS[:2], "img/z.bmp\tUID_3\tALL\t0.4\tHEM"]))
    with pytest.raises(UserError) as raised:
        align_predictions(a, b, tmp_path / "vgg19.tsv", tmp_path / "effnet.tsv")
    message = str(raised.value)
    assert "vgg19.tsv" in message and "effnet.tsv" in message
    assert "1 only in the first ('img/c.bmp')" in message
    assert "1 only in the second ('img/z.bmp')" in message


def test_align_rejects_different_labels(tmp_path):
    a = read_predictions(_write(tmp_path, "vgg19.tsv", GOOD_ROWS))
    b = read_predictions(_write(tmp_path, "effnet.tsv", [*GOOD_ROWS[:2], "img/c.bmp\tUID_3\tHEM\t0.4\tHEM"]))
    with pytest.raises(UserError, match=r"vgg19\.tsv and .*effnet\.tsv give different labels .*'img/c.bmp'"):
        align_predictions(a, b, tmp_path / "vgg19.tsv", tmp_path / "effnet.tsv")


METRICS = {"roc_auc": {"value": 0.8}, "threshold": 0.5}
# Where evaluate_predictions writes a seed's test metrics, under tmp_path.
METRICS_FILE = "results/metrics/random/vgg19/seed1/test.json"
# Each checked reader of metrics files, reading the one at a path.
METRICS_READERS = {
    "read_metrics": read_metrics,
    "read_keyed_metrics": lambda path: read_keyed_metrics([path], "model", "seed", "subset"),
    "per_seed_metrics": lambda path: per_seed_metrics({("vgg19", 1, "test"): path}, ["roc_auc"]),
}


@pytest.mark.parametrize("reader", METRICS_READERS.values(), ids=METRICS_READERS)
def test_a_metrics_file_as_evaluate_predictions_writes_it_reads(tmp_path, reader):
    write_metrics(METRICS, tmp_path / METRICS_FILE)
    assert read_metrics(tmp_path / METRICS_FILE) == METRICS | {FORMAT_VERSION_KEY: METRICS_FORMAT_VERSION}
    reader(tmp_path / METRICS_FILE)


@pytest.mark.parametrize("reader", METRICS_READERS.values(), ids=METRICS_READERS)
@pytest.mark.parametrize(
    ("stamp", "declared"), [({}, "no format version"), ({FORMAT_VERSION_KEY: 1}, "format version 1")]
)
def test_a_metrics_file_of_an_older_version_is_refused_naming_the_rule(tmp_path, reader, stamp, declared):
    write_json(METRICS | stamp, tmp_path / METRICS_FILE)
    older = r"test\.json was written by an older version of the workflow; rebuild: snakemake --forcerun"
    with pytest.raises(UserError, match=rf"{older} evaluate_predictions \(it has {declared};"):
        reader(tmp_path / METRICS_FILE)


def test_a_metrics_file_of_a_newer_version_asks_for_an_update(tmp_path):
    write_json(METRICS | {FORMAT_VERSION_KEY: METRICS_FORMAT_VERSION + 1}, tmp_path / METRICS_FILE)
    with pytest.raises(UserError, match=r"test\.json was written by a newer version .*update the workflow"):
        read_metrics(tmp_path / METRICS_FILE)
