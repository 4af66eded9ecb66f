"""The face tracker and the probability smoother on synthetic box sequences."""

from __future__ import annotations

import numpy as np
import pytest

from moodify.labels import EMOTIONS
from moodify.video.tracking import IoUTracker, ProbabilitySmoother, greedy_match, iou, iou_matrix


def ids_by_box(tracks) -> dict[int, tuple[int, int, int, int]]:
    return {t.id: t.int_box for t in tracks}


def test_iou_values_and_matrix_agree():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == pytest.approx(1.0)
    assert iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 10, 10), (10, 0, 10, 10)) == 0.0  # touching edges do not overlap
    a = [(0, 0, 10, 10), (3, 4, 20, 8)]
    b = [(5, 0, 10, 10), (100, 100, 5, 5), (2, 2, 9, 9)]
    m = iou_matrix(a, b)
    assert m.shape == (2, 3)
    for i in range(2):
        for j in range(3):
            assert m[i, j] == pytest.approx(iou(a[i], b[j]))
    assert iou_matrix([], b).shape == (0, 3)


def test_greedy_match_takes_best_pairs_first_and_respects_threshold():
    scores = np.array([[0.9, 0.8], [0.85, 0.1]])
    assert sorted(greedy_match(scores, 0.3)) == [(0, 0)]  # row 1's only good column is taken
    assert sorted(greedy_match(scores, 0.05)) == [(0, 0), (1, 1)]


def test_one_moving_face_keeps_one_id():
    tracker = IoUTracker()
    seen = set()
    for i in range(30):
        tracks = tracker.update([(20 + 12 * i, 100, 100, 100)])
        assert len(tracks) == 1
        seen.add(tracks[0].id)
    assert seen == {1}


def test_crossing_faces_keep_their_ids():
    """Two faces at the same height walk through each other; each keeps its id afterwards."""
    tracker = IoUTracker()
    for i in range(31):
        a = (0 + 10 * i, 100, 100, 100)  # walks right
        b = (300 - 10 * i, 100, 100, 100)  # walks left
        tracks = tracker.update([a, b] if i % 2 else [b, a])  # detector order must not matter
        assert len(tracks) == 2
        if i == 0:
            id_a = next(t.id for t in tracks if t.int_box == a)
        boxes = ids_by_box(tracks)
        assert boxes[id_a] == a, f"frame {i}: the right-walking face lost its id"
    assert {t.id for t in tracks} == {1, 2}


def test_crossing_with_occlusion_the_hidden_face_comes_back_with_its_id():
    """While the faces overlap the detector sees only the front one; the other one coasts."""
    tracker = IoUTracker()
    ids_after = None
    for i in range(31):
        a = (0 + 10 * i, 100, 100, 100)
        b = (300 - 10 * i, 100, 100, 100)
        overlapping = abs(a[0] - b[0]) < 60
        tracks = tracker.update([a] if overlapping else [a, b])
        if i == 0:
            id_a, id_b = (next(t.id for t in tracks if t.int_box == box) for box in (a, b))
        if overlapping:
            assert [t.id for t in tracks] == [id_a]  # the hidden face is not drawn where it is not seen
        ids_after = ids_by_box(tracks)
    assert ids_after == {id_a: a, id_b: b}


def test_a_missed_detection_keeps_the_id_and_hides_the_box_meanwhile():
    tracker = IoUTracker(max_missed=3)
    for i in range(10):
        tracks = tracker.update([(100 + 5 * i, 50, 80, 80)])
    assert [t.id for t in tracks] == [1]
    assert tracker.update([]) == []  # the detector missed the face twice
    assert tracker.update([]) == []
    tracks = tracker.update([(165, 50, 80, 80)])
    assert [t.id for t in tracks] == [1]
    assert tracker.next_id == 2  # no new track was started


def test_coast_keeps_showing_a_face_the_detector_missed_once():
    tracker = IoUTracker(coast=1)
    for i in range(5):
        tracker.update([(100 + 10 * i, 50, 80, 80)])
    tracks = tracker.update([])  # missed once: still shown, carried along its path
    assert [t.id for t in tracks] == [1] and tracks[0].int_box[0] == pytest.approx(150, abs=2)
    assert tracker.update([]) == []  # missed twice: hidden


def test_a_face_that_leaves_for_long_gets_a_new_id_and_ids_are_never_reused():
    tracker = IoUTracker(max_missed=3)
    for _ in range(5):
        tracker.update([(200, 200, 90, 90)])
    for _ in range(4):  # more missed detections than max_missed: the track is dropped
        assert tracker.update([]) == []
    tracks = tracker.update([(200, 200, 90, 90)])
    assert [t.id for t in tracks] == [2]


def test_a_face_leaving_and_returning_soon_keeps_its_id():
    """It walks out at the right edge and comes back in where it left."""
    tracker = IoUTracker(max_missed=5)
    for i in range(8):
        tracks = tracker.update([(400 + 20 * i, 100, 100, 100)])
    for _ in range(4):
        assert tracker.update([]) == []
    tracks = tracker.update([(540, 100, 100, 100)])
    assert [t.id for t in tracks] == [1]


def test_frames_without_detection_move_the_box_at_the_tracked_velocity():
    tracker = IoUTracker()
    for i in range(5):
        tracker.update([(100 + 10 * i, 100, 80, 80)])
    tracks = tracker.update(None)  # the detector did not run on this frame
    assert [t.id for t in tracks] == [1]
    assert tracks[0].int_box[0] == pytest.approx(150, abs=2)
    tracks = tracker.update([(160, 100, 80, 80)])
    assert [t.id for t in tracks] == [1]


def test_a_fast_face_seen_every_third_frame_keeps_its_id():
    """Live mode runs the detector on every 3rd frame; a quick head turn moves the box by most of
    its width between detections, with no overlap left."""
    tracker = IoUTracker()
    ids = set()
    for i in range(30):
        box = (20 + 14 * i, 140, 58, 58)
        tracks = tracker.update([box] if i % 3 == 0 else None)
        ids.update(t.id for t in tracks)
        if i % 3 == 0:
            assert [t.int_box for t in tracks] == [box]
    assert ids == {1}


def test_a_different_face_far_away_is_a_new_person():
    tracker = IoUTracker()
    for _ in range(3):
        tracker.update([(50, 50, 60, 60)])
    tracks = tracker.update([(300, 50, 60, 60)])  # 4 face widths away: not the same person
    assert [t.id for t in tracks] == [2]
    tracks = tracker.update([(52, 50, 60, 60), (300, 50, 60, 60)])
    assert ids_by_box(tracks) == {1: (52, 50, 60, 60), 2: (300, 50, 60, 60)}


def test_min_hits_hides_a_one_frame_false_face():
    tracker = IoUTracker(min_hits=2)
    assert tracker.update([(10, 10, 50, 50), (300, 300, 40, 40)]) == []  # nobody confirmed yet
    tracks = tracker.update([(12, 10, 50, 50)])  # the second box was a one-off
    assert [t.id for t in tracks] == [1]
    assert len(tracker.tracks) == 1


def test_tracker_rejects_bad_settings():
    with pytest.raises(ValueError):
        IoUTracker(iou_threshold=0)
    with pytest.raises(ValueError):
        IoUTracker(min_hits=0)
    with pytest.raises(ValueError):
        IoUTracker(max_distance=-1)


def onehot(name: str, strength: float = 0.8) -> np.ndarray:
    p = np.full(len(EMOTIONS), (1 - strength) / (len(EMOTIONS) - 1))
    p[EMOTIONS.index(name)] = strength
    return p


def test_smoothing_zero_is_off():
    s = ProbabilitySmoother(0)
    s.update(1, onehot("happy"))
    assert np.allclose(s.update(1, onehot("sad")), onehot("sad"))


def test_smoothing_ignores_one_odd_frame_and_follows_a_real_change():
    s = ProbabilitySmoother(0.6)
    for _ in range(5):
        s.update(1, onehot("happy"))
    assert EMOTIONS[int(np.argmax(s.update(1, onehot("angry"))))] == "happy"  # one odd frame
    for _ in range(3):
        s.update(1, onehot("happy"))
    labels = [EMOTIONS[int(np.argmax(s.update(1, onehot("surprise"))))] for _ in range(4)]
    assert labels[0] == "happy" and labels[-1] == "surprise"
    assert np.isclose(s.get(1).sum(), 1.0)


def test_smoother_keeps_tracks_apart_and_forgets_dropped_ones():
    s = ProbabilitySmoother(0.9)
    s.update(1, onehot("happy"))
    s.update(2, onehot("sad"))
    assert np.argmax(s.update(1, onehot("happy"))) == EMOTIONS.index("happy")
    s.keep_only([2])
    assert s.get(1) is None and len(s) == 1
    assert np.allclose(s.update(1, onehot("fear")), onehot("fear"))  # a new track starts fresh


def test_smoother_rejects_bad_settings():
    for bad in (-0.1, 1.0, 2):
        with pytest.raises(ValueError):
            ProbabilitySmoother(bad)
