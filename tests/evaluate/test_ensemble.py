"""Seed ensembles: the mean of the seeds' p_all per image, and DeLong's test of the ensemble against each seed."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from statsmodels.stats.multitest import multipletests

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.fileio import read_tsv, write_tsv
from leukemia_dtl.core.vocabulary import PREDICTION_COLUMNS
from leukemia_dtl.evaluate.delong import delong_roc_test
from leukemia_dtl.evaluate.ensemble import ensemble_vs_seeds, pooled_rotations, seed_ensemble, write_seed_ensembles

PATHS = ["img/a.bmp", "img/b.bmp", "img/c.bmp", "img/d.bmp"]
LABELS = ["ALL", "HEM", "ALL", "HEM"]
# Three seeds' p_all per image of PATHS: on c and d the seeds disagree and their mean decides.
SEED_P_ALL = [[0.9, 0.2, 0.8, 0.4], [0.7, 0.4, 0.3, 0.1], [0.8, 0.3, 0.5, 0.7]]
ENSEMBLE_P_ALL = [0.8, 0.3, 1.6 / 3, 0.4]


def _prediction_file(path, paths, labels, p_all):
    pred = ["ALL" if p >= 0.5 else "HEM" for p in p_all]
    frame = pd.DataFrame({"path": paths, "subject": [p.split("/")[1][0] for p in paths], "label": labels})
    write_tsv(frame.assign(p_all=p_all, pred=pred), path)
    return path


def _seed_files(tmp_path, subset="test"):
    """The seeds' files, each listing the images in another order, as if predicted from other splits."""
    files = []
    for seed, p_all in enumerate(SEED_P_ALL):
        order = np.roll(np.arange(len(PATHS)), seed)
        files.append(
            _prediction_file(
                tmp_path / "results" / "predictions" / "random" / "vgg19" / f"seed{seed}" / f"{subset}.tsv",
                [PATHS[i] for i in order],
                [LABELS[i] for i in order],
                [p_all[i] for i in order],
            )
        )
    return files


def test_the_ensemble_is_the_mean_of_the_seeds_in_the_first_files_order(tmp_path):
    ensemble = seed_ensemble(_seed_files(tmp_path))
    assert list(ensemble.columns) == list(PREDICTION_COLUMNS)
    assert ensemble["path"].tolist() == PATHS
    assert ensemble["label"].tolist() == LABELS
    np.testing.assert_allclose(ensemble["p_all"], ENSEMBLE_P_ALL)
    assert ensemble["pred"].tolist() == ["ALL", "HEM", "ALL", "HEM"]


def test_one_seed_is_its_own_ensemble(tmp_path):
    (first, *_) = _seed_files(tmp_path)
    pd.testing.assert_frame_equal(seed_ensemble([first]), read_tsv(first).astype({"p_all": float}))


def test_seed_files_of_other_images_or_labels_fail_naming_both(tmp_path):
    good = _seed_files(tmp_path)[0]
    other_image = _prediction_file(tmp_path / "other.tsv", [*PATHS[:3], "img/e.bmp"], LABELS, [0.5] * 4)
    with pytest.raises(UserError, match=r"seed0/test\.tsv and .*other\.tsv do not cover the same test images"):
        seed_ensemble([good, other_image])
    relabelled = _prediction_file(tmp_path / "relabelled.tsv", PATHS, ["HEM", *LABELS[1:]], [0.5] * 4)
    with pytest.raises(UserError, match=r"relabelled\.tsv give different labels for image\(s\) 'img/a\.bmp'"):
        seed_ensemble([good, relabelled])


def test_write_seed_ensembles_writes_every_subset_or_none(tmp_path):
    files = {subset: _seed_files(tmp_path, subset) for subset in ("val", "test")}
    out = {subset: tmp_path / "ensemble" / f"{subset}.tsv" for subset in files}
    write_seed_ensembles(files, out)
    for path in out.values():
        np.testing.assert_allclose(read_tsv(path)["p_all"].astype(float), ENSEMBLE_P_ALL)

    with pytest.raises(
        UserError, match=r"got the predictions of seeds \[0, 1\], other subsets those of seeds \[0, 1, 2\]"
    ):
        write_seed_ensembles(
            {"val": files["val"], "test": files["test"][:2]}, {s: tmp_path / f"new_{s}.tsv" for s in files}
        )
    assert not (tmp_path / "new_val.tsv").exists()


@pytest.fixture
def comparison_files(tmp_path):
    """Two models' ensembles and seeds on 60 images; vgg19's ensemble is the mean of its two seeds."""
    rng = np.random.default_rng(3)
    paths = [f"img/{number}.bmp" for number in range(60)]
    labels = np.where(np.arange(60) % 3, "ALL", "HEM")
    signal = (labels == "ALL") * 0.3
    ensembles, seeds = {}, {}
    for model in ("vgg19", "efficientnetb3"):
        seed_scores = [np.clip(signal + rng.uniform(0.1, 0.7, 60), 0, 1) for _ in range(2)]
        for seed, scores in zip((1, 2), seed_scores, strict=True):
            seeds[model, "plain", seed, "test"] = _prediction_file(
                tmp_path / f"{model}_{seed}.tsv", paths, labels, scores
            )
        ensembles[model, "plain", "test"] = _prediction_file(
            tmp_path / f"{model}_ensemble.tsv", paths, labels, np.mean(seed_scores, axis=0)
        )
    return ensembles, seeds


def test_each_seed_is_compared_with_its_ensemble_by_delong_with_holm_over_the_table(comparison_files):
    ensembles, seeds = comparison_files
    table = ensemble_vs_seeds(ensembles, seeds)
    assert table[["model", "kind", "seed", "subset"]].values.tolist() == [
        [model, kind, seed, subset] for model, kind, seed, subset in seeds
    ]
    assert (table["independent_unit"] == "image").all() and (table["n_images"] == 60).all()
    for row in table.itertuples():
        ensemble = read_tsv(ensembles[row.model, "plain", "test"])
        single = read_tsv(seeds[row.model, "plain", row.seed, "test"])
        truth = (ensemble["label"] == "ALL").astype(int)
        expected = delong_roc_test(truth, ensemble["p_all"].astype(float), single["p_all"].astype(float))
        assert row.auc_ensemble == pytest.approx(roc_auc_score(truth, ensemble["p_all"].astype(float)))
        assert row.auc_seed == pytest.approx(roc_auc_score(truth, single["p_all"].astype(float)))
        assert row.diff == pytest.approx(row.auc_ensemble - row.auc_seed)
        assert row.p_value == pytest.approx(expected["p_value"])
    np.testing.assert_allclose(table["p_holm"], multipletests(table["p_value"], method="holm")[1])


def test_a_seed_identical_to_its_ensemble_has_no_p_value(comparison_files):
    ensembles, _ = comparison_files
    same = {("vgg19", "plain", 1, "test"): ensembles["vgg19", "plain", "test"]}
    (row,) = ensemble_vs_seeds(ensembles, same).itertuples()
    assert row.diff == 0 and np.isnan(row.p_value) and np.isnan(row.p_holm)


def test_a_seed_without_its_ensemble_is_a_user_error(comparison_files):
    ensembles, seeds = comparison_files
    tta_seed = {("vgg19", "tta", 1, "test"): seeds["vgg19", "plain", 1, "test"]}
    with pytest.raises(UserError, match="No tta ensemble predictions of vgg19 on test to compare seed 1 with"):
        ensemble_vs_seeds(ensembles, tta_seed)


def test_pooled_rotations_keep_each_image_once_with_the_mean_of_the_rotations_that_predicted_it(tmp_path):
    """Test images come from one rotation each, an external image from all three."""
    files = [
        _prediction_file(tmp_path / "fold0.tsv", ["t/a.bmp", "x/e.bmp"], ["ALL", "HEM"], [0.9, 0.2]),
        _prediction_file(tmp_path / "fold1.tsv", ["t/b.bmp", "x/e.bmp"], ["HEM", "HEM"], [0.4, 0.5]),
        _prediction_file(tmp_path / "fold2.tsv", ["x/e.bmp", "t/c.bmp"], ["HEM", "ALL"], [0.8, 0.3]),
    ]
    pooled = pooled_rotations(files)
    assert list(pooled.columns) == list(PREDICTION_COLUMNS)
    assert pooled["path"].tolist() == ["t/a.bmp", "x/e.bmp", "t/b.bmp", "t/c.bmp"]
    np.testing.assert_allclose(pooled["p_all"], [0.9, 0.5, 0.4, 0.3])
    assert pooled["pred"].tolist() == ["ALL", "ALL", "HEM", "HEM"]
    assert pooled["label"].tolist() == ["ALL", "HEM", "HEM", "ALL"]


def test_rotations_that_label_an_image_differently_are_a_user_error(tmp_path):
    files = [
        _prediction_file(tmp_path / "fold0.tsv", ["x/e.bmp"], ["HEM"], [0.2]),
        _prediction_file(tmp_path / "fold1.tsv", ["x/e.bmp"], ["ALL"], [0.5]),
    ]
    with pytest.raises(UserError, match=r"image\(s\) \['x/e.bmp'\] different labels"):
        pooled_rotations(files)
