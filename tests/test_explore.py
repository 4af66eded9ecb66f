"""The dataset and results analysis behind the notebooks: small self-made inputs with known
answers, plus checks against the published facts of the real FER2013 (marked ``data``)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from moodify.labels import EMOTIONS
from moodify.training import explore
from moodify.training.data import FaceSet


def _faces(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 48, 48), dtype=np.uint8)


@pytest.fixture
def sets() -> dict[str, FaceSet]:
    """Train 6 faces, test 4; test[1] is a copy of train[2] with another label, train[4] = train[5]
    (same label), train[0] and test[3] are black."""
    train, test = _faces(6, 1), _faces(4, 2)
    train[0] = 0
    test[3] = 0
    test[1] = train[2]
    train[5] = train[4]
    return {"Training": FaceSet(train, np.array([0, 3, 3, 6, 4, 4]), rows=np.arange(6)),
            "PrivateTest": FaceSet(test, np.array([3, 5, 6, 0]), rows=np.arange(6, 10))}


def test_class_balance_counts_every_class_in_label_order(sets):
    table = explore.class_balance(sets)
    assert list(table.columns) == list(EMOTIONS)
    assert list(table.index) == ["Training", "PrivateTest", "All"]
    assert table.loc["Training"].tolist() == [1, 0, 0, 2, 2, 0, 1]
    assert table.loc["All"].tolist() == [2, 0, 0, 3, 2, 1, 2]


def test_subsample_keeps_at_most_limit_faces_in_file_order(sets):
    small = explore.subsample(sets, 3, seed=0)
    assert [len(fs) for fs in small.values()] == [3, 3]
    rows = small["Training"].rows
    assert list(rows) == sorted(rows)
    for fs, full in zip(small.values(), sets.values()):  # images, labels and rows stay aligned
        for image, label, row in zip(fs.images, fs.labels, fs.rows):
            i = list(full.rows).index(row)
            assert np.array_equal(image, full.images[i]) and label == full.labels[i]
    assert explore.subsample(sets, None)["Training"] is sets["Training"]


def test_sample_indices_pick_each_class_and_pad_rare_ones():
    labels = np.array([0, 0, 0, 3, 6, 6, 0, 3])
    picked = explore.sample_indices(labels, per_class=3, seed=0)
    assert picked.shape == (7, 3)
    for k in range(7):
        chosen = picked[k][picked[k] >= 0]
        assert np.all(labels[chosen] == k)
        assert len(chosen) == min(3, np.sum(labels == k)) and len(set(chosen)) == len(chosen)
    assert np.array_equal(picked, explore.sample_indices(labels, per_class=3, seed=0))


def test_face_grid_places_each_face_and_leaves_gaps_blank():
    images = _faces(3)
    grid = explore.face_grid(images, [[2, -1], [0, 1]], pad=2, fill=255)
    assert grid.shape == (98, 98) and grid.dtype == np.uint8
    assert np.array_equal(grid[:48, :48], images[2])
    assert np.all(grid[:48, 50:] == 255)
    assert np.array_equal(grid[50:, 50:], images[1])
    # A flat list wraps into rows of ncols.
    assert explore.face_grid(images, [0, 1, 2], ncols=2, pad=0).shape == (96, 96)


def test_mean_faces_average_each_class():
    images = np.stack([np.full((48, 48), v, np.uint8) for v in (10, 30, 200)])
    means = explore.mean_faces(images, np.array([0, 0, 3]))
    assert means.shape == (7, 48, 48)
    assert np.allclose(means[0], 20) and np.allclose(means[3], 200)
    assert np.isnan(means[1]).all()  # no disgust faces


def test_blank_images_are_found_and_faint_faces_are_not():
    images = _faces(4)
    images[1] = 0
    images[2] = 128
    images[2, 0, 0] = 129  # std ~0.02: still blank
    images[3] = np.where(np.arange(48) % 2, 120, 128).astype(np.uint8)[None, :]  # std 4, a faint pattern
    assert explore.find_blank(images).tolist() == [1, 2]


def test_blank_table_names_split_row_and_label(sets):
    table = explore.blank_table(sets)
    assert table[["split", "row", "label"]].values.tolist() == [["Training", 0, "angry"], ["PrivateTest", 9, "angry"]]
    assert (table["contrast"] == 0).all()


def test_combine_splits_keeps_faces_labels_and_rows_together(sets):
    images, labels, splits, rows = explore.combine_splits(sets)
    assert len(images) == len(labels) == len(splits) == len(rows) == 10
    assert splits[6] == "PrivateTest" and rows[6] == 6 and labels[6] == 3
    assert np.array_equal(images[7], sets["PrivateTest"].images[1])


def test_exact_duplicates_are_grouped_and_near_duplicates_are_not():
    images = _faces(6)
    images[3] = images[0]
    images[5] = images[0]
    images[4] = images[1]
    images[4, 10, 10] ^= 1  # one grey level off: a different image
    groups = explore.find_duplicates(images)
    assert [g.tolist() for g in groups] == [[0, 3, 5]]


def test_duplicate_table_flags_leaks_label_conflicts_and_blanks(sets):
    table = explore.duplicate_table(sets)
    by_rows = {tuple(r): rec for r, rec in zip(table["rows"], table.to_dict("records"))}
    assert set(by_rows) == {(0, 9), (2, 7), (4, 5)}
    leak = by_rows[(2, 7)]
    assert leak["cross_split"] and not leak["labels_agree"] and leak["labels"] == ["happy", "surprise"]
    assert leak["splits"] == ["Training", "PrivateTest"]
    same = by_rows[(4, 5)]
    assert not same["cross_split"] and same["labels_agree"] and not same["blank"]
    assert by_rows[(0, 9)]["blank"]


def test_split_overlap_counts_leaked_faces_but_not_blank_ones(sets):
    table = explore.split_overlap(sets)
    assert table.loc["PrivateTest", "Training"] == 1  # test[1] == train[2]; the black pair is not a leak
    assert table.loc["Training", "PrivateTest"] == 1
    assert table.loc["Training", "Training"] == 0


def test_copies_of_training_faces_are_found_but_not_blank_ones(sets):
    mask = explore.copies_of(sets["PrivateTest"].images, sets["Training"].images)
    assert mask.tolist() == [False, True, False, False]  # test[1] == train[2]; the black test[3] is no copy


def test_pixel_stats_match_numpy(sets):
    table = explore.pixel_stats(sets)
    train = sets["Training"].images / 255.0
    assert table.loc["Training", "faces"] == 6
    assert table.loc["Training", "pixel_mean"] == pytest.approx(train.mean())
    assert table.loc["Training", "pixel_std"] == pytest.approx(train.std())
    assert table.loc["PrivateTest", "blank"] == 1
    stats = explore.image_stats(sets["Training"].images)
    assert stats.loc[0, "brightness"] == 0 and stats.loc[0, "contrast"] == 0


def test_ferplus_agreement_and_summary():
    fer = np.array([3, 3, 0, 0, 6])
    votes = np.zeros((5, 7), np.float32)
    votes[0, 3] = 10            # happy, crowd agrees
    votes[1, [3, 6]] = [4, 6]   # happy, crowd says neutral
    votes[2, [0, 4]] = [5, 5]   # angry, a tie goes to the earlier class: angry
    # votes[3]: no 7-class votes (all contempt / unknown / not a face)
    votes[4, 6] = 8
    table = explore.ferplus_agreement(fer, votes)
    assert list(table.columns) == list(EMOTIONS) + ["none"]
    assert table.loc["happy", "happy"] == 1 and table.loc["happy", "neutral"] == 1
    assert table.loc["angry", "angry"] == 1 and table.loc["angry", "none"] == 1
    assert table.to_numpy().sum() == 5
    support = explore.ferplus_support(fer, votes)
    assert np.allclose(support[:3], [1.0, 0.4, 0.5]) and np.isnan(support[3])
    summary = explore.ferplus_summary(fer, votes)
    assert summary.loc["happy", "majority_agrees"] == 0.5
    assert summary.loc["angry", "mean_vote_share"] == pytest.approx(0.25)  # no votes counts as 0
    assert summary.loc["neutral", "faces"] == 1 and np.isnan(summary.loc["fear", "majority_agrees"])


def test_confident_mistakes_are_wrong_and_sorted():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.05, 0.95], [0.7, 0.3]])
    probs = np.pad(probs, ((0, 0), (0, 5)))
    labels = np.array([1, 1, 1, 0, 0])
    assert explore.confident_mistakes(probs, labels, k=10).tolist() == [3, 0, 2]
    assert explore.confident_mistakes(probs, labels, k=2).tolist() == [3, 0]


def test_training_log_reads_epochs_and_tolerates_a_half_written_line(tmp_path):
    log = tmp_path / "log.jsonl"
    epochs = [{"epoch": e, "lr": 0.1 / e, "train_loss": 2 / e, "val_accuracy": 0.3 * e} for e in (1, 2)]
    log.write_text("\n".join(json.dumps(e) for e in epochs) + '\n{"epoch": 3, "lr"')
    table = explore.read_training_log(log)
    assert list(table.index) == [1, 2] and table.loc[2, "val_accuracy"] == pytest.approx(0.6)
    log.write_text('{"epoch": 1}\nnot json\n{"epoch": 3}\n')
    with pytest.raises(ValueError, match=":2: not a JSON line"):
        explore.read_training_log(log)
    log.write_text("")
    with pytest.raises(ValueError, match="no epochs"):
        explore.read_training_log(log)


def test_plot_faces_draws_one_titled_panel_per_face():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = explore.plot_faces(_faces(5), ["a", "b", "c", "d", "e"], ncols=3)
    drawn = [ax for ax in fig.axes if ax.images]
    assert len(fig.axes) == 6 and [ax.get_title() for ax in drawn] == ["a", "b", "c", "d", "e"]
    plt.close(fig)


def test_default_data_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MOODIFY_DATA", str(tmp_path))
    assert explore.default_data_root() == tmp_path
    monkeypatch.delenv("MOODIFY_DATA")
    assert explore.default_data_root() == explore.PROJECT_ROOT.parent / "shared" / "data"


# The real data: numbers published in data/fer2013/README.md and data/ferplus/README.md.
BLACK_ROWS = [6458, 7629, 10423, 11286, 13148, 13402, 13988, 15894, 22198, 22927, 28601, 30002]


@pytest.mark.data
def test_real_fer2013_balance_blanks_and_duplicates(fer2013):
    balance = explore.class_balance(fer2013)
    assert balance.loc["PrivateTest"].tolist() == [491, 55, 528, 879, 594, 416, 626]
    assert balance.loc["All"].tolist() == [4953, 547, 5121, 8989, 6077, 4002, 6198]
    dups = explore.duplicate_table(fer2013)
    black = dups[dups["blank"]]
    assert len(black) == 1 and sorted(black.iloc[0]["rows"]) == BLACK_ROWS
    # The black images plus one uniform grey one (row 2171, std 0.64 grey levels).
    assert sorted(explore.blank_table(fer2013)["row"]) == sorted(BLACK_ROWS + [2171])
    # FER2013 is known to repeat faces across its splits: some test faces are training faces.
    assert explore.split_overlap(fer2013).loc["PrivateTest", "Training"] > 0


@pytest.mark.data
def test_real_ferplus_votes_line_up_with_fer2013(data_root, fer2013):
    votes = explore.load_ferplus_votes(data_root)
    assert votes.shape == (35887, 7)
    test = fer2013["PrivateTest"]
    agreement = explore.ferplus_agreement(test.labels, votes[test.rows])
    assert agreement.to_numpy().sum() == len(test)
    # The crowd relabels many FER2013 faces, but happy stays mostly happy.
    summary = explore.ferplus_summary(test.labels, votes[test.rows])
    assert summary.loc["happy", "majority_agrees"] > 0.8
    assert summary["majority_agrees"].min() < 0.5
    assert isinstance(summary, pd.DataFrame)
