"""Result tables and downloads: what a user gets from the app's CSV, JSON and PNG buttons."""

from __future__ import annotations

import io
import json

import cv2
import numpy as np
import pandas as pd
import pytest

from moodify import EMOTIONS, Face
from moodify.pipeline.draw import LEGIBLE_TEXT_PX, annotate, face_label, label_layout
from moodify.app_support.results import (TABLE_COLUMNS, encode_png, face_thumbnail, faces_table, fit_for_display,
                                         probabilities_table, records_json, results_records, results_table,
                                         table_csv)


def _face(box, top: str, p: float = 0.7) -> Face:
    rest = (1 - p) / (len(EMOTIONS) - 1)
    return Face(box, {e: (p if e == top else rest) for e in EMOTIONS})


@pytest.fixture()
def two_faces() -> list[Face]:
    # Recognizer order: largest first, which is not left-to-right here on purpose.
    return [_face((200, 40, 120, 120), "happy", 0.8), _face((20, 60, 60, 60), "sad", 0.6)]


def test_table_numbers_faces_as_the_picture_does(two_faces):
    table = faces_table(two_faces, image="group.jpg")
    assert list(table.columns) == list(TABLE_COLUMNS)
    assert table["face"].tolist() == [1, 2]
    assert table["path"].tolist() == ["group.jpg", "group.jpg"]
    # Face 1 in the table is the face drawn with label "1 ...": same box, same emotion.
    for row, face in zip(table.itertuples(), two_faces):
        assert (row.x, row.y, row.w, row.h) == face.box
        assert face_label(face, row.face).split()[:2] == [str(row.face), row.emotion]
    assert table.loc[0, "happy"] == pytest.approx(0.8)
    assert table.loc[1, "confidence"] == pytest.approx(0.6)
    np.testing.assert_allclose(table[list(EMOTIONS)].sum(axis=1), 1.0)


def test_label_drawn_for_face_one_sits_on_face_one(two_faces):
    canvas = np.full((240, 360, 3), 255, np.uint8)
    drawn = annotate(canvas, two_faces)
    table = faces_table(two_faces)
    first = table[table["face"] == 1].iloc[0]
    # The box outline of face 1 is painted at the table's coordinates (and not at face 2's).
    assert (drawn[first.y + first.h // 2, first.x] != 255).any()
    assert (drawn[first.y + first.h // 2, first.x + first.w // 2] == 255).all()


def test_numbering_restarts_in_each_image(two_faces):
    table = results_table([("a.jpg", two_faces), ("empty.jpg", []), ("b.jpg", two_faces[:1])])
    assert table["path"].tolist() == ["a.jpg", "a.jpg", "empty.jpg", "b.jpg"]
    assert table["face"].tolist() == [1, 2, pd.NA, 1]  # a photo without a face has no face number


def test_a_photo_without_a_face_is_listed_in_the_table_of_all_photos(two_faces):
    """"All photos" left out a photo with no face: a user could not tell it had been analysed."""
    table = results_table([("a.jpg", two_faces), ("wall.jpg", [])])
    assert table["path"].tolist() == ["a.jpg", "a.jpg", "wall.jpg"]
    wall = table[table["path"] == "wall.jpg"].iloc[0]
    assert pd.isna(wall["face"]) and wall["emotion"] == "no face"  # faces count from 1, as in batch
    assert wall[["x", "y", "w", "h", "confidence", *EMOTIONS]].isna().all()
    # The columns still compute: mean confidence over the faces, box arithmetic, filtering faces.
    assert table["confidence"].mean() == pytest.approx(0.7)
    assert (table["x"] + table["w"]).tolist()[:2] == [320, 80]
    assert table[table["face"].notna()]["x"].astype(int).tolist() == [200, 20]
    back = pd.read_csv(io.BytesIO(table_csv(table)))
    assert back["path"].tolist() == ["a.jpg", "a.jpg", "wall.jpg"] and back["emotion"].iloc[2] == "no face"
    assert pd.isna(back["x"].iloc[2]) and pd.isna(back["happy"].iloc[2]) and pd.isna(back["face"].iloc[2])


def test_csv_round_trips(two_faces):
    table = faces_table(two_faces, image="x.png")
    back = pd.read_csv(io.BytesIO(table_csv(table)))
    assert list(back.columns) == list(TABLE_COLUMNS)
    assert back["emotion"].tolist() == ["happy", "sad"]
    np.testing.assert_allclose(back[list(EMOTIONS)].to_numpy(), table[list(EMOTIONS)].to_numpy(), atol=1e-6)


def test_every_upload_gets_one_row_in_every_download(two_faces):
    """"Download all as CSV" left an unreadable file out (only the JSON had it), and a picture
    without a face gave a header-only CSV: every upload now has a row in both, with the reason."""
    table = faces_table([], image="wall.jpg")
    assert table["path"].tolist() == ["wall.jpg"] and table["emotion"].tolist() == ["no face"]
    errors = {"bad.txt": "bad.txt: not an image"}
    table = results_table([("a.jpg", two_faces), ("wall.jpg", [])], errors=errors)
    back = pd.read_csv(io.BytesIO(table_csv(table)), keep_default_na=False)
    assert back["path"].tolist() == ["a.jpg", "a.jpg", "wall.jpg", "bad.txt"]
    assert back["emotion"].tolist() == ["happy", "sad", "no face", ""]
    assert back["error"].tolist() == ["", "", "", "not an image"]  # the reason, as batch's error column
    records = results_records([("a.jpg", two_faces), ("wall.jpg", [])], errors=errors)
    assert [r["path"] for r in records] == back["path"].drop_duplicates().tolist()
    assert records[-1] == {"path": "bad.txt", "error": "not an image"}


def test_table_shows_percentages_as_the_cards_do_and_no_none_cells(two_faces):
    """The app's table truncated (96.1%) where the card, the picture and the CLI round (96.2%), and
    a photo without a face showed "None" in every cell."""
    from moodify.app_support.results import percent, styled_table

    face = _face((0, 0, 10, 10), "happy", 0.9615)
    styled = styled_table(results_table([("a.jpg", [face]), ("wall.jpg", [])],
                                        errors={"bad.txt": "bad.txt: not an image"}))
    html = styled.to_html()
    assert percent(0.9615) == "96.2%" and ">96.2%</td>" in html and face_label(face, 1) == "1 happy 96.2%"
    # Streamlit writes "None" for any missing value, whatever the styler says: there are none to write.
    assert not styled.data.isna().any().any()
    assert "None" not in html and "nan" not in html.lower() and "&lt;NA&gt;" not in html and "-1" not in html
    assert styled.data["happy"].dtype.kind == "f"  # still numbers, so the column sorts as numbers
    from moodify.cli.classify import _format_faces  # the CLI writes it the same way

    assert "happy 96.2%" in _format_faces("a.jpg", [face], hint="")


def test_probabilities_table_keeps_emotion_order(two_faces):
    probs = probabilities_table(two_faces[0])
    assert probs["emotion"].tolist() == list(EMOTIONS)
    assert probs["probability"].sum() == pytest.approx(1.0)


def test_png_round_trips():
    img = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    data = encode_png(img)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    np.testing.assert_array_equal(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), img)


def test_thumbnail_is_square_even_at_the_edge():
    img = np.zeros((100, 100, 3), np.uint8)
    img[:50, :50] = 200
    thumb = face_thumbnail(img, (0, 0, 40, 30), size=64)
    assert thumb.shape == (64, 64, 3)
    assert thumb[32, 32].tolist() == [200, 200, 200]  # centred on the face


def test_fit_for_display_shrinks_picture_and_boxes(two_faces):
    big = np.zeros((2000, 4000, 3), np.uint8)
    small, scaled = fit_for_display(big, two_faces, max_side=1000)
    assert small.shape[:2] == (500, 1000)
    assert scaled[0].box == (50, 10, 30, 30) and scaled[0].emotion == "happy"
    assert two_faces[0].box == (200, 40, 120, 120)  # the originals, used by the tables, are untouched
    same, unscaled = fit_for_display(small, scaled, max_side=1000)
    assert same is small and unscaled[0].box == scaled[0].box


def test_real_photo_table_matches_recognizer(recognizer, astronaut_bgr):
    faces = recognizer.analyze(astronaut_bgr)
    table = faces_table(faces, image="astronaut.png")
    assert len(table) == 1
    row = table.iloc[0]
    assert abs(row.x - 177) < 20 and abs(row.y - 66) < 20
    assert row.emotion == faces[0].emotion
    assert row[list(EMOTIONS)].sum() == pytest.approx(1.0, abs=1e-5)


def test_every_percentage_has_one_decimal():
    """A table showed "93.28%" next to "0.8%": every percentage is now written one way."""
    from moodify.app_support.results import percent

    assert [percent(p) for p in (0.9328, 0.008, 1.0, 0.0)] == ["93.3%", "0.8%", "100.0%", "0.0%"]
    assert face_label(_face((0, 0, 10, 10), "happy", 0.9328), 1) == "1 happy 93.3%"


def _drawn_outside_outline(box, size=(600, 600), **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """(changed, face_area): pixels ``annotate`` changed on a white canvas, and the face box (inside
    its outline) plus the band of box-height/3 below it, where a viewer looks at chin and neck."""
    canvas = np.full((*size, 3), 255, np.uint8)
    face = _face(box, "happy", 0.8)
    changed = (annotate(canvas, [face], **kwargs) != 255).any(axis=2)
    x, y, w, h = box
    edge = 4  # the outline's half-thickness, with a pixel to spare
    area = np.zeros(size, bool)
    area[y + edge:y + h - edge, x + edge:x + w - edge] = True  # inside the box
    area[y + h + edge:y + h + h // 3, x - edge:x + w + edge] = True  # just below it
    return changed, area


def test_label_stays_off_the_face_and_chin():
    """The label panel was drawn over the chin and neck: nothing but the box outline is drawn on the
    face or just below it, and the label is there, in full, around it."""
    changed, area = _drawn_outside_outline((250, 250, 100, 100))
    assert not changed[area].any()
    label = changed.copy()
    label[240:360, 240:360] = False  # the box and its outline
    rows, cols = np.nonzero(label)
    assert rows.size > 200 and rows.max() < 250  # a label block, above the box


def _group(n: int = 4, *, width: int = 760, height: int = 240, face: int = 90) -> list[Face]:
    """``n`` faces side by side, as in a group photo (the boxes YuNet finds on four astronauts)."""
    step = width // n
    return [_face((i * step + (step - face) // 2, 45, face, int(face * 1.2)), "happy", 0.951) for i in range(n)]


@pytest.mark.parametrize("shown_width", [None, 760, 285])
def test_group_photo_labels_cover_no_other_face_and_read_when_shown_small(shown_width):
    """Four faces side by side: each label ran into the next face's box, and at a 1024-pixel window
    (the picture ~285 px wide) none could be read. No label covers another face or another label,
    each stays in the picture, and its letters are LEGIBLE_TEXT_PX high as shown."""
    faces = _group()
    labels = label_layout((240, 760, 3), faces, shown_width=shown_width)
    assert len(labels) == len(faces)
    for i, (label, face) in enumerate(zip(labels, faces)):
        x, y, w, h = label.rect
        assert x >= 0 and y >= 0 and x + w <= 760 and y + h <= 240, label
        assert label.text.split()[0] == str(i + 1)
        for j, other in enumerate(faces):
            if j != i:
                assert not _overlaps(label.rect, other.box), (label, j + 1)
        for other in labels[i + 1:]:
            assert not _overlaps(label.rect, other.rect), (label, other)
        if shown_width:
            assert label.cap_px * shown_width / 760 >= LEGIBLE_TEXT_PX - 0.01, label
    if shown_width == 285:  # the full text cannot fit at that size: numbers, details beside the picture
        assert [label.text for label in labels] == ["1", "2", "3", "4"]
    if shown_width is None:
        assert labels[0].text == "1 happy 95.1%"


def _overlaps(a, b) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def test_face_at_the_top_edge_gets_its_label_beside_it():
    changed, area = _drawn_outside_outline((250, 0, 100, 100))
    assert not changed[area].any()
    (tw, th), _ = cv2.getTextSize("1 happy 80.0%", cv2.FONT_HERSHEY_SIMPLEX, 0.6, 1)
    beside = changed[:, 356:]
    rows, cols = np.nonzero(beside)
    assert rows.min() >= 0 and cols.max() - cols.min() >= tw - 4  # the whole label fits in the picture
    assert beside[:th].any()  # at the face's height, not pushed below it


def test_labels_of_two_faces_side_by_side_do_not_cover_each_other():
    """Two faces near the top of a frame: each label goes beside or under its own face, and none
    over the other face or its label."""
    canvas = np.full((300, 500, 3), 255, np.uint8)  # no room right of face 2, nor above either face
    faces = [_face((75, 20, 75, 90), "happy", 0.9), _face((330, 20, 75, 90), "sad", 0.9)]
    alone = annotate(canvas, faces[:1])
    both = annotate(canvas, faces)
    first = (alone != 255).any(axis=2)
    # Face 1's box and label come out the same whether or not face 2 is drawn too.
    np.testing.assert_array_equal(both[first], alone[first])
    second = (both != alone).any(axis=2)
    assert second.sum() > 1000  # face 2's box and label are drawn, elsewhere
    assert not second[20 + 4:110 - 4, 330 + 4:405 - 4].any()  # and not on face 2 itself
