"""Grad-CAM: the map lands where the evidence is, has the promised shape and range, and leaves
the model untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from moodify.model.checkpoint import make_checkpoint
from moodify.model.explain import default_layer, default_layers, fallback_layer, gradcam, overlay
from moodify.model.network import EmotionNet, NetConfig
from moodify.model.torch_backend import EmotionModel
from moodify.pipeline.preprocess import Preprocessing, normalize

ANGRY, HAPPY, NEUTRAL = 0, 3, 6
# Where each class's only evidence sits in the synthetic faces (rows, columns).
CUE = {ANGRY: (slice(6, 18), slice(6, 18)), HAPPY: (slice(30, 42), slice(30, 42))}


def _faces(labels, rng: np.random.Generator) -> np.ndarray:
    """Noisy grey squares; an "angry" face has a bright patch top left, a "happy" one bottom right."""
    x = rng.normal(110, 12, (len(labels), 48, 48))
    for i, k in enumerate(labels):
        if k in CUE:
            x[i][CUE[k]] = 230
    return np.clip(x, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def cue_model() -> EmotionModel:
    """A small EmotionNet trained for a second to tell the two patches (and no patch) apart."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batches: extra threads only fight over a busy CPU
    try:
        torch.manual_seed(0)
        rng = np.random.default_rng(0)
        config = NetConfig(widths=[8, 16], convs_per_block=1, hidden=16, dropout=0.0)
        net, prep = EmotionNet(config), Preprocessing()
        opt = torch.optim.Adam(net.parameters(), lr=1e-2)
        for _ in range(40):
            y = rng.choice([ANGRY, HAPPY, NEUTRAL], 32)
            loss = torch.nn.functional.cross_entropy(net(normalize(_faces(y, rng), prep)), torch.as_tensor(y))
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    model = EmotionModel(make_checkpoint(net.eval(), config, prep))
    test = _faces([ANGRY, HAPPY, NEUTRAL], np.random.default_rng(1))
    assert model.predict(test).argmax(axis=1).tolist() == [ANGRY, HAPPY, NEUTRAL], "fixture model failed to learn"
    return model


def _inside_vs_outside(cam: np.ndarray, label: int) -> tuple[float, float]:
    inside = np.zeros(cam.shape, dtype=bool)
    inside[CUE[label]] = True
    return float(cam[inside].mean()), float(cam[~inside].mean())


@pytest.mark.parametrize("label", [ANGRY, HAPPY])
def test_map_highlights_the_evidence(cue_model, label):
    face = _faces([label], np.random.default_rng(2))
    cam = gradcam(cue_model, face)[0]
    inside, outside = _inside_vs_outside(cam, label)
    assert inside > 5 * outside, (inside, outside)


def test_flip_tta_maps_back_onto_the_face(cue_model):
    # The mirrored face has its patch top right; its map must be mirrored back before averaging.
    face = _faces([ANGRY], np.random.default_rng(3))
    inside, outside = _inside_vs_outside(gradcam(cue_model, face, tta=True)[0], ANGRY)
    assert inside > 3 * outside, (inside, outside)


def test_shape_range_and_targets(cue_model):
    faces = _faces([ANGRY, HAPPY, NEUTRAL, ANGRY], np.random.default_rng(4))
    maps = gradcam(cue_model, faces, batch_size=3)  # crosses a batch boundary
    assert maps.shape == (4, 48, 48) and maps.dtype == np.float32
    assert maps.min() >= 0 and maps.max() <= 1
    assert np.allclose(maps.reshape(4, -1).max(axis=1)[[0, 1, 3]], 1)  # each map is scaled to peak at 1
    # The default target is the predicted class, and a name means the same as its index.
    assert np.allclose(maps[:2], gradcam(cue_model, faces[:2], target=[ANGRY, "happy"]))
    # Explaining another class gives another map.
    assert not np.allclose(gradcam(cue_model, faces[:1], target="happy"), maps[:1])
    # One 2-D face is a batch of one.
    assert gradcam(cue_model, faces[0]).shape == (1, 48, 48)


def test_model_is_left_untouched(cue_model):
    face = _faces([HAPPY], np.random.default_rng(5))
    before = cue_model.predict(face)
    with torch.inference_mode():  # as a caller inside batched_logits-style code would be
        gradcam(cue_model, face)
    assert not cue_model.net.training
    assert all(p.grad is None for p in cue_model.net.parameters())
    assert np.array_equal(cue_model.predict(face), before)


@pytest.mark.parametrize("faces, target, message", [
    (np.zeros((2, 32, 32), np.uint8), None, "shape"),
    (np.zeros((1, 48, 48), np.float32), None, "uint8"),
    (np.zeros((2, 48, 48), np.uint8), "bored", "unknown emotion"),
    (np.zeros((2, 48, 48), np.uint8), 7, "class index"),
    (np.zeros((2, 48, 48), np.uint8), [1], "2 faces"),
])
def test_bad_input_is_a_clear_error(cue_model, faces, target, message):
    with pytest.raises(ValueError, match=message):
        gradcam(cue_model, faces, target)


def test_default_layer_is_the_deepest_conv_block(cue_model):
    layer = default_layer(cue_model.net)
    assert layer is [m for m in cue_model.net.features if isinstance(m, torch.nn.ReLU)][-1]


def _haar_crop(recognizer, astronaut_bgr) -> np.ndarray:
    # The Haar crop of the astronaut: one whose map at the deepest block has a region that raises
    # "happy". (The YuNet crop of this face has none there; see the test below.)
    import moodify

    return moodify.Recognizer(model=recognizer.model, detector=moodify.HaarDetector()).analyze(astronaut_bgr)[0].crop


def test_shipped_model_on_a_real_face(recognizer, astronaut_bgr):
    cam = gradcam(recognizer.model, _haar_crop(recognizer, astronaut_bgr))[0]
    assert cam.shape == (48, 48) and 0 <= cam.min() and cam.max() == pytest.approx(1)
    yunet = gradcam(recognizer.model, recognizer.analyze(astronaut_bgr)[0].crop)[0]
    assert yunet.shape == (48, 48) and 0 <= yunet.min() and yunet.max() == pytest.approx(1)


def test_a_face_with_an_empty_map_at_the_deepest_block_is_explained_one_conv_earlier(recognizer, astronaut_bgr):
    """For about one face in five (the YuNet crop of the astronaut among them) no region raises the
    score at the last ReLU: the Explain toggle showed a plain face. One conv earlier it has a map."""
    net, crop = recognizer.model.net, recognizer.analyze(astronaut_bgr)[0].crop
    assert gradcam(recognizer.model, crop, layer=default_layer(net)).max() == 0
    earlier = gradcam(recognizer.model, crop, layer=fallback_layer(net))
    assert earlier.max() == pytest.approx(1)
    # In a batch, only the empty face takes the fallback; the other keeps its deepest-block map.
    haar = _haar_crop(recognizer, astronaut_bgr)
    both = gradcam(recognizer.model, np.stack([crop, haar]))
    np.testing.assert_allclose(both[0], earlier[0], atol=1e-5)
    np.testing.assert_allclose(both[1], gradcam(recognizer.model, haar, layer=default_layer(net))[0], atol=1e-5)


def test_an_ensemble_is_explained_by_all_its_members(recognizer, astronaut_bgr):
    import moodify

    accurate = moodify.load_model("accurate")  # two networks: no single .features to hook
    crop = recognizer.analyze(astronaut_bgr)[0].crop
    cam = gradcam(accurate, crop)[0]
    assert cam.shape == (48, 48) and 0 <= cam.min() and cam.max() == pytest.approx(1)
    per_member = []
    for member, layer in zip(accurate.net.members, default_layers(accurate.net)):
        one = gradcam(accurate, crop, layer=layer)[0]
        # A member with no region raising the score at its deepest block is read one conv earlier.
        per_member.append(one if one.max() > 0 else gradcam(accurate, crop, layer=fallback_layer(member))[0])
    assert len(per_member) == 2 and all(one.max() == pytest.approx(1) for one in per_member)
    expected = np.mean(per_member, axis=0)
    np.testing.assert_allclose(cam, expected / expected.max(), atol=1e-5)


def test_overlay_paints_heat_only_where_it_is():
    face = np.tile(np.arange(48, dtype=np.uint8) * 5, (48, 1))
    heat = np.zeros((48, 48), np.float32)
    heat[10:20, 10:20] = 1.0
    out = overlay(face, heat)
    assert out.shape == (48, 48, 3) and out.dtype == np.uint8
    cold = heat == 0
    assert np.array_equal(out[cold], np.repeat(face[cold][:, None], 3, axis=1))  # plain face where cold
    assert not np.array_equal(out[~cold], np.repeat(face[~cold][:, None], 3, axis=1))
    assert overlay(face, heat, size=192).shape == (192, 192, 3)
    with pytest.raises(ValueError, match="differs"):
        overlay(face, heat[:20])


def test_explaining_while_another_thread_predicts_on_the_same_model(recognizer, astronaut_bgr):
    # The web app shares one model between every session and the webcam thread: a predict running
    # through the network while its hooks are on must neither break Grad-CAM nor change its map.
    import threading

    face = _haar_crop(recognizer, astronaut_bgr)
    expected = gradcam(recognizer.model, face)
    assert expected.max() == pytest.approx(1)
    others = np.random.default_rng(0).integers(0, 256, (64, 48, 48), dtype=np.uint8)
    stop, errors = threading.Event(), []

    def predict_forever():
        while not stop.is_set():
            recognizer.model.predict(others)

    thread = threading.Thread(target=predict_forever)
    thread.start()
    try:
        for _ in range(60):
            try:
                got = gradcam(recognizer.model, face)
            except RuntimeError as exc:
                errors.append(str(exc))
                continue
            assert np.allclose(got, expected, atol=1e-5)
    finally:
        stop.set()
        thread.join()
    assert errors == []


def test_the_apps_explain_toggle_gives_one_overlay_per_face(recognizer, astronaut_bgr, model):
    from moodify.app_support.explain import face_saliency

    faces = recognizer.analyze(astronaut_bgr)
    shown = face_saliency(model, faces, size=96)
    assert len(shown) == len(faces) == 1
    picture, caption = shown[0]
    assert picture.shape == (96, 96, 3) and picture.dtype == np.uint8 and caption == "where the model looks"
    assert face_saliency(model, []) == []


def test_an_empty_explain_map_is_captioned_as_empty(recognizer, astronaut_bgr, model, monkeypatch):
    """A face with no region that raised its score shows the plain face: the caption must not claim a map."""
    import moodify.app_support.explain as app_explain

    faces = recognizer.analyze(astronaut_bgr)
    monkeypatch.setattr(app_explain, "gradcam", lambda model, crops, targets: np.zeros((len(crops), 48, 48)))
    picture, caption = app_explain.face_saliency(model, faces, size=96)[0]
    assert caption == f"no region stood out for {faces[0].emotion}: empty map"
    assert picture.shape == (96, 96, 3)
