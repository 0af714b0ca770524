import numpy as np
import pandas as pd
import pytest

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.fileio import read_tsv
from leukemia_dtl.core.run_paths import SET_PREDICTIONS, in_set
from leukemia_dtl.evaluate.formatting import write_table
from leukemia_dtl.evaluate.subjects import (
    PER_SUBJECT_COLUMNS,
    per_subject_table,
    subject_metrics,
    subject_scores,
    subject_table,
)
from rule_scripts import run_rule_script

# Two ALL patients and two HEM donors; the ensemble's p_all per image, whose subject means are
# P1 0.8, P2 0.5, H1 0.3, H2 0.6.
SUBJECTS = ["P1", "P1", "P1", "P2", "P2", "H1", "H1", "H2"]
LABELS = ["ALL"] * 5 + ["HEM"] * 3
ENSEMBLE_P_ALL = np.array([0.9, 0.8, 0.7, 0.4, 0.6, 0.2, 0.4, 0.6])
# The two seeds lie 0.05 below and above the ensemble, so it is their mean.
SEED_SHIFTS = {1: -0.05, 2: 0.05}


def _write(path, p_all, subjects=SUBJECTS, labels=LABELS):
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(
        {
            "path": [f"img_{index}.bmp" for index in range(len(p_all))],
            "subject": subjects,
            "label": labels,
            "p_all": p_all,
            "pred": np.where(np.asarray(p_all) >= 0.5, "ALL", "HEM"),
        }
    ).to_csv(path, sep="\t", index=False)
    return path


@pytest.fixture
def files(tmp_path):
    """Both models see the same images; efficientnetb3 is vgg19 with every p_all at 1 - 0.2 * (1 - p). Each file
    lies where the workflow puts it (the rule script reads its run from its path)."""
    seed_files, ensemble_files = {}, {}

    def path(model, seed):
        return tmp_path / in_set(SET_PREDICTIONS, seed=seed).format(scheme="patient", model=model, subset="test")

    for model, transform in (("vgg19", lambda p: p), ("efficientnetb3", lambda p: 1 - 0.2 * (1 - p))):
        ensemble_files[model, "test"] = _write(path(model, None), transform(ENSEMBLE_P_ALL))
        for seed, shift in SEED_SHIFTS.items():
            seed_files[model, seed, "test"] = _write(path(model, seed), transform(ENSEMBLE_P_ALL + shift))
    return seed_files, ensemble_files


def _read(path):
    frame = read_tsv(path)
    return frame.assign(p_all=frame["p_all"].astype(float))


def test_subject_scores_by_hand(files):
    _, ensemble_files = files
    scores = subject_scores(_read(ensemble_files["vgg19", "test"]), threshold=0.5).set_index("subject")
    assert scores.index.tolist() == ["P1", "P2", "H1", "H2"]
    assert scores["class"].tolist() == ["ALL", "ALL", "HEM", "HEM"]
    assert scores["images"].tolist() == [3, 2, 2, 1]
    assert scores["mean_p_all"].tolist() == pytest.approx([0.8, 0.5, 0.3, 0.6])
    assert scores["share_called_all"].tolist() == [1.0, 0.5, 0.0, 1.0]


def test_a_subject_with_both_labels_takes_the_majority_and_a_tie_goes_to_all():
    predictions = pd.DataFrame(
        {
            "subject": ["a", "a", "a", "b", "b"],
            "label": ["ALL", "HEM", "HEM", "ALL", "HEM"],
            "p_all": [0.1, 0.2, 0.3, 0.4, 0.5],
        }
    )
    assert subject_scores(predictions, 0.5)["class"].tolist() == ["HEM", "ALL"]


def test_subject_metrics_by_hand():
    """Means P1 .8, P2 .5 against H1 .3, H2 .6: the ALL subject scores higher in 3 of 4 pairs; at 0.5 three of
    four subjects are called right (H2 is not)."""
    scores = pd.DataFrame({"class": ["ALL", "ALL", "HEM", "HEM"], "mean_p_all": [0.8, 0.5, 0.3, 0.6]})
    assert subject_metrics(scores, 0.5) == {"roc_auc": 0.75, "accuracy": 0.75}
    assert subject_metrics(scores, 0.7) == {"roc_auc": 0.75, "accuracy": 0.75}
    only_all = subject_metrics(scores.iloc[:2], 0.6)
    assert np.isnan(only_all["roc_auc"]) and only_all["accuracy"] == 0.5


def test_subject_table_counts_and_scores_seeds_and_ensemble(files, tmp_path):
    """Seed 1 (means .75 .45 .25 .55) calls P2 and H2 wrong, accuracy 1/2; seed 2 (.85 .55 .35 .65) only H2,
    3/4; both rank the subjects as the ensemble does, AUC 3/4."""
    table = subject_table(*files, ["vgg19", "efficientnetb3"], threshold=0.5, min_subjects_per_class=2)
    assert table[["model", "subset"]].values.tolist() == [["vgg19", "test"], ["efficientnetb3", "test"]]
    row = table.set_index("model").loc["vgg19"]
    assert (row["ALL subjects"], row["HEM subjects"], row["Images"]) == (2, 2, 8)
    assert row["accuracy_mean"] == pytest.approx(0.625)
    assert row["accuracy_sd"] == pytest.approx(np.std([0.5, 0.75], ddof=1))
    assert row["Subject accuracy, seeds (mean ± sd)"] == "0.625 ± 0.177"
    assert (row["roc_auc_mean"], row["roc_auc_sd"], row["roc_auc_n_seeds"]) == (0.75, 0.0, 2)
    assert (row["roc_auc_ensemble"], row["accuracy_ensemble"]) == (0.75, 0.75)
    assert row["Subject ROC-AUC, ensemble"] == "0.750"
    assert row["Caveat"] == ""
    assert "Caveat" not in table.attrs["caption"]
    write_table(table, tmp_path / "subjects.tsv", tmp_path / "subjects.md", "Subjects")
    lines = (tmp_path / "subjects.md").read_text().splitlines()
    assert lines[2] == table.attrs["caption"] and lines[4].startswith("| Model | Subset | ALL subjects |")
    assert "n_images" not in lines[4] and "n_images" in read_tsv(tmp_path / "subjects.tsv")


def test_few_subjects_print_a_caveat_and_auc_is_na_without_a_class(files, tmp_path):
    seed_files, ensemble_files = files
    only_patients = {"subjects": SUBJECTS[:5], "labels": LABELS[:5]}
    ensemble_files["vgg19", "external"] = _write(tmp_path / "ext.tsv", ENSEMBLE_P_ALL[:5], **only_patients)
    for seed in SEED_SHIFTS:
        seed_files["vgg19", seed, "external"] = _write(
            tmp_path / f"ext_{seed}.tsv", ENSEMBLE_P_ALL[:5], **only_patients
        )
    table = subject_table(seed_files, ensemble_files, ["vgg19"], threshold=0.5, min_subjects_per_class=5)
    rows = table.set_index("subset")
    assert rows.loc["test", "Caveat"] == "fewer than 5 subjects of a class (2 ALL, 2 HEM)"
    assert (
        rows.loc["external", "Caveat"] == "fewer than 5 subjects of a class (2 ALL, 0 HEM); subject ROC-AUC undefined"
    )
    assert rows.loc["external", "Subject ROC-AUC, seeds (mean ± sd)"] == "n/a"
    assert rows.loc["external", "Subject ROC-AUC, ensemble"] == "n/a"
    assert np.isnan(rows.loc["external", "roc_auc_ensemble"]) and rows.loc["external", "roc_auc_n_seeds"] == 0
    assert "Caveat: fewer than 5 subjects of a class in test, external;" in table.attrs["caption"]
    # The same limit as the metrics files' subject intervals (statistics.min_subjects_per_class), and the caption
    # says they are missing there.
    assert "no subject-level bootstrap interval is given there" in table.attrs["caption"]


def test_the_rule_script_takes_the_configured_minimum(files, tmp_path):
    seed_files, ensemble_files = files
    outputs = {name: tmp_path / f"{name}.tsv" for name in ("tsv", "per_subject")} | {"md": tmp_path / "subjects.md"}
    run_rule_script(
        "subject_table.py",
        input={"predictions": [str(path) for path in seed_files.values()], "ensemble": list(ensemble_files.values())},
        output={name: str(path) for name, path in outputs.items()},
        params={
            "models": ["vgg19", "efficientnetb3"],
            "threshold": 0.5,
            "min_subjects_per_class": 3,
        },
        wildcards={"scheme": "patient"},
    )
    assert read_tsv(outputs["tsv"])["Caveat"].tolist() == ["fewer than 3 subjects of a class (2 ALL, 2 HEM)"] * 2


def test_per_subject_table_holds_the_ensembles_scores(files):
    _, ensemble_files = files
    table = per_subject_table(ensemble_files, ["vgg19", "efficientnetb3"], threshold=0.5)
    assert list(table.columns) == list(PER_SUBJECT_COLUMNS)
    assert len(table) == 2 * 4
    efficientnet = table[table["model"] == "efficientnetb3"].set_index("subject")
    # 1 - 0.2 * (1 - p): every image of the more confident model is called ALL.
    assert efficientnet["mean_p_all"].tolist() == pytest.approx([0.96, 0.9, 0.86, 0.92])
    assert efficientnet["share_called_all"].tolist() == [1.0] * 4
    assert efficientnet.loc["H1", "class"] == "HEM" and efficientnet.loc["H1", "images"] == 2


def test_missing_ensemble_or_seeds_name_the_model_and_subset(files):
    seed_files, ensemble_files = files
    with pytest.raises(UserError, match="No ensemble predictions of resnet50 on test"):
        subject_table(seed_files, ensemble_files, ["vgg19", "resnet50"], threshold=0.5, min_subjects_per_class=5)
    vgg_only = {key: path for key, path in seed_files.items() if key[0] == "vgg19"}
    with pytest.raises(UserError, match="No seed predictions of efficientnetb3 on test"):
        subject_table(vgg_only, ensemble_files, ["vgg19", "efficientnetb3"], threshold=0.5, min_subjects_per_class=5)
