"""CLIP encoder: one weights path (local directory/file or Hub → HF cache), both towers, truncation, honest errors.

Everything runs on a tiny random-init CLIP saved in open_clip's hub layout (tests/tiny_clip.py): no download.
"""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
from huggingface_hub import constants
from PIL import Image

from recommender.clip import CONFIG_NAME, SAFETENSORS_NAME, ClipEncoder, load_clip_encoder
from recommender.encoders import PROBE_SENTENCES, fingerprints_match, make_fingerprint
from recommender.errors import ModelUnavailableError, QueryError
from tests.hf_cache import fill_hf_cache
from tests.tiny_clip import TINY_ARCHITECTURE, TINY_EMBED_DIM, build_tiny_clip, register_tiny_architecture

LAION_B32 = "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture(scope="module")
def tiny_encoder(tiny_dir):
    return load_clip_encoder(f"clip:{tiny_dir}", architecture="ViT-B-32", pretrained=str(tiny_dir), hub_id=None,
                             revision=None, threshold=0.3, device="cpu")


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return tmp_path / "hub"


@pytest.fixture(scope="module")
def sample_images():
    skimage_data = pytest.importorskip("skimage.data")
    return [Image.fromarray(skimage_data.astronaut()), Image.fromarray(skimage_data.coffee()),
            Image.fromarray(skimage_data.chelsea()), Image.fromarray(skimage_data.camera())]


def assert_unit_rows(vectors: np.ndarray, rows: int) -> None:
    assert vectors.shape == (rows, TINY_EMBED_DIM)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


def test_saved_layout_is_open_clips_hub_layout(tiny_dir):
    import open_clip

    assert (tiny_dir / CONFIG_NAME).is_file() and (tiny_dir / SAFETENSORS_NAME).is_file()
    assert sum(path.stat().st_size for path in tiny_dir.iterdir()) < 5 * 2**20
    # open_clip itself loads the directory, and agrees with our encoder on the text tower.
    model = open_clip.create_model_from_pretrained(f"local-dir:{tiny_dir}", return_transform=False)
    tokens = open_clip.get_tokenizer(f"local-dir:{tiny_dir}")(["a night drive"])
    theirs = model.eval().encode_text(tokens, normalize=True).detach().numpy()
    ours = load_clip_encoder("tiny", architecture=TINY_ARCHITECTURE, pretrained=str(tiny_dir), hub_id=None,
                             revision=None, threshold=0.3, device="cpu").encode(["a night drive"])
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_local_directory_loads_with_the_text_encoder_interface(tiny_encoder, tiny_dir):
    assert isinstance(tiny_encoder, ClipEncoder)
    assert tiny_encoder.kind == "clip"
    assert tiny_encoder.source == "local" and tiny_encoder.revision is None and tiny_encoder.notice is None
    assert tiny_encoder.model_id == str(tiny_dir.resolve())
    assert tiny_encoder.threshold == 0.3
    assert tiny_encoder.dimension == TINY_EMBED_DIM
    assert tiny_encoder.describe() == f"clip:{tiny_dir} ({tiny_dir.resolve()}, from local)"
    vectors = tiny_encoder.encode(["headlights on an empty highway", "we danced in the rain", "coffee"])
    assert_unit_rows(vectors, 3)
    assert tiny_encoder.last_encode_report == {"clip_truncated_lines": 0}
    np.testing.assert_allclose(tiny_encoder.encode_queries(["coffee"]), vectors[2:], atol=1e-6)
    assert tiny_encoder.encode([]).shape == (0, TINY_EMBED_DIM)


def test_fingerprint_is_the_text_tower_on_the_probe_sentences(tiny_encoder):
    expected = make_fingerprint(tiny_encoder.encode(list(PROBE_SENTENCES)))
    assert fingerprints_match(tiny_encoder.fingerprint, expected)
    assert len(tiny_encoder.fingerprint["probes"]) == len(PROBE_SENTENCES)


def test_long_texts_are_truncated_not_dropped_and_counted(tiny_encoder):
    long_a, long_b = "la " * 200, "la " * 300 + "and a different ending"
    vectors = tiny_encoder.encode([long_a, "short line", long_b], batch_size=2)
    assert_unit_rows(vectors, 3)
    assert tiny_encoder.last_encode_report == {"clip_truncated_lines": 2}
    # Both keep only their first 75 tokens: the same ("la" × 75), so the same embedding.
    np.testing.assert_allclose(vectors[0], vectors[2], atol=1e-6)
    # 75 words of one token each still fit (start + 75 + end = 77); 76 do not.
    assert tiny_encoder.count_truncated(["la " * 75, "la " * 76]) == 1
    tiny_encoder.encode(["short again"])
    assert tiny_encoder.last_encode_report == {"clip_truncated_lines": 0}


def test_images_go_through_the_image_tower(tiny_encoder, sample_images, tmp_path):
    vectors = tiny_encoder.encode_images(sample_images)
    assert_unit_rows(vectors, len(sample_images))
    assert not np.allclose(vectors[0], vectors[1])
    # Paths and raw bytes are accepted too and give the same vector as the decoded image.
    path = tmp_path / "astronaut.png"
    sample_images[0].save(path)
    buffer = io.BytesIO()
    sample_images[0].save(buffer, format="PNG")
    again = tiny_encoder.encode_images([path, buffer.getvalue()], batch_size=1)
    np.testing.assert_allclose(again, np.vstack([vectors[0], vectors[0]]), atol=1e-5)
    assert tiny_encoder.encode_images([]).shape == (0, TINY_EMBED_DIM)
    with pytest.raises(QueryError, match="not an image"):
        tiny_encoder.encode_images([b"<html><body>hello</body></html>"])


def test_weights_file_with_registered_architecture(tiny_dir, tiny_encoder, tmp_path):
    register_tiny_architecture()
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(tiny_dir / SAFETENSORS_NAME, bare / "weights.safetensors")
    encoder = load_clip_encoder("clip:file", architecture=TINY_ARCHITECTURE,
                                pretrained=str(bare / "weights.safetensors"), hub_id=None, revision=None,
                                threshold=0.3, device="cpu")
    assert encoder.source == "local"
    assert fingerprints_match(encoder.fingerprint, tiny_encoder.fingerprint)


def test_hub_id_loads_from_the_hf_cache_offline(hf_cache, tiny_dir, tiny_encoder):
    fill_hf_cache(hf_cache, "someone/tiny-clip", tiny_dir, revision="2" * 40)
    encoder = load_clip_encoder("clip:someone/tiny-clip", architecture="ViT-B-32", pretrained=None,
                                hub_id="someone/tiny-clip", revision=None, threshold=0.25, device="cpu")
    assert encoder.source == "cache"
    assert encoder.revision == "2" * 40
    assert encoder.model_id == "someone/tiny-clip"
    assert encoder.notice and "HF_HUB_OFFLINE" in encoder.notice
    assert encoder.describe() == f"clip:someone/tiny-clip (someone/tiny-clip@{'2' * 12}, from cache)"
    assert fingerprints_match(encoder.fingerprint, tiny_encoder.fingerprint)


def test_pinned_revision_and_open_clip_tag_resolve_through_the_cache(hf_cache, tiny_dir):
    fill_hf_cache(hf_cache, LAION_B32, tiny_dir, revision="3" * 40, ref=None)
    pinned = load_clip_encoder("clip", architecture="ViT-B-32", pretrained=None, hub_id=LAION_B32,
                               revision="3" * 40, threshold=0.3, device="cpu")
    assert pinned.revision == "3" * 40
    # An open_clip pretrained tag is a name for its Hub copy in open_clip's registry (here: the tiny stand-in).
    fill_hf_cache(hf_cache, LAION_B32, tiny_dir, revision="3" * 40)
    tagged = load_clip_encoder("clip", architecture="ViT-B-32", pretrained="laion2b_s34b_b79k", hub_id=None,
                               revision=None, threshold=0.3, device="cpu")
    assert tagged.model_id == LAION_B32 and tagged.source == "cache"


def test_missing_weights_are_a_clear_error(hf_cache, tmp_path, tiny_dir):
    def load(**kwargs):
        arguments = {"architecture": "ViT-B-32", "pretrained": None, "hub_id": None, "revision": None,
                     "threshold": 0.3, "device": "cpu", **kwargs}
        return load_clip_encoder("clip", **arguments)

    with pytest.raises(ModelUnavailableError, match=r"no CLIP weights available: .*not in the local HF cache"):
        load(hub_id=LAION_B32)
    with pytest.raises(ModelUnavailableError, match="no CLIP weights available: no local weights and no Hub id"):
        load()
    with pytest.raises(ModelUnavailableError, match=r"no CLIP weights available: .* holds none of"):
        load(pretrained=str(tmp_path))
    with pytest.raises(ModelUnavailableError, match=r"no CLIP weights available: .*neither a local weights file"):
        load(pretrained=str(tmp_path / "missing" / "weights.safetensors"))
    with pytest.raises(ModelUnavailableError, match=r"no CLIP weights available: .*neither"):
        load(pretrained="no_such_tag")
    # A snapshot in the cache that lacks the weights file (e.g. an interrupted download).
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(tiny_dir / CONFIG_NAME, partial / CONFIG_NAME)
    fill_hf_cache(hf_cache, "someone/partial", partial)
    with pytest.raises(ModelUnavailableError, match="no CLIP weights available: the snapshot of someone/partial"):
        load(hub_id="someone/partial")


def test_weights_that_do_not_fit_are_refused(tmp_path, tiny_dir):
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    shutil.copy(tiny_dir / CONFIG_NAME, corrupt / CONFIG_NAME)
    (corrupt / SAFETENSORS_NAME).write_bytes(b"not a safetensors file")
    with pytest.raises(ModelUnavailableError, match="could not be loaded"):
        load_clip_encoder("clip", architecture="ViT-B-32", pretrained=str(corrupt), hub_id=None, revision=None,
                          threshold=0.3, device="cpu")
    bare = tmp_path / "weights.safetensors"
    shutil.copy(tiny_dir / SAFETENSORS_NAME, bare)
    with pytest.raises(ModelUnavailableError, match="unknown CLIP architecture 'Nope-1'"):
        load_clip_encoder("clip", architecture="Nope-1", pretrained=str(bare), hub_id=None, revision=None,
                          threshold=0.3, device="cpu")
