"""Model resolution: local directory, HF cache, packaged fallback with a notice, and honest errors."""

from __future__ import annotations

import numpy as np
import pytest
from huggingface_hub import constants

from recommender.encoders import fingerprints_match, load_encoder, packaged_model_path
from recommender.errors import ModelUnavailableError
from tests.hf_cache import fill_hf_cache


@pytest.fixture
def empty_hf_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    load_encoder.cache_clear()
    yield tmp_path / "hub"
    load_encoder.cache_clear()


def test_baseline_offline_without_cache_uses_packaged_copy_and_says_so(empty_hf_cache):
    encoder = load_encoder("baseline")
    assert encoder.source == "packaged"
    assert "packaged copy of the same model" in encoder.notice
    vectors = encoder.encode(["a quiet night drive", "a loud summer party"])
    assert vectors.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


def test_other_configured_model_falls_back_with_a_visible_fallback_notice(empty_hf_cache):
    encoder = load_encoder("distilroberta")
    assert encoder.source == "packaged"
    assert encoder.notice.startswith("FALLBACK: sentence-transformers/all-distilroberta-v1")


def test_model_without_fallback_and_unknown_names_are_errors(empty_hf_cache):
    with pytest.raises(ModelUnavailableError, match="not available"):
        load_encoder("finetuned")
    with pytest.raises(ModelUnavailableError, match="unknown model 'nonsense'"):
        load_encoder("nonsense")
    with pytest.raises(ModelUnavailableError, match="not available"):
        load_encoder("someone/not-cached")


def test_configured_model_loads_from_the_hf_cache(empty_hf_cache):
    fill_hf_cache(empty_hf_cache, "sentence-transformers/all-MiniLM-L6-v2", packaged_model_path(),
                             revision="1" * 40)
    encoder = load_encoder("baseline")
    assert encoder.source == "cache"
    assert encoder.revision == "1" * 40
    assert encoder.model_id == "sentence-transformers/all-MiniLM-L6-v2"
    assert encoder.notice and "HF_HUB_OFFLINE" in encoder.notice


def test_local_directory_loads_as_is_and_has_the_same_fingerprint(empty_hf_cache, packaged_encoder):
    encoder = load_encoder(str(packaged_model_path()))
    assert encoder.source == "local"
    assert encoder.notice is None
    assert fingerprints_match(encoder.fingerprint, packaged_encoder.fingerprint)


def test_directory_that_is_not_a_model_is_refused(empty_hf_cache, tmp_path):
    with pytest.raises(ModelUnavailableError, match="not a sentence-transformers model"):
        load_encoder(str(tmp_path))


def test_different_models_have_different_fingerprints(packaged_encoder):
    other = {"probes": (np.asarray(packaged_encoder.fingerprint["probes"])[::-1]).tolist()}
    assert not fingerprints_match(packaged_encoder.fingerprint, other)
    assert fingerprints_match(packaged_encoder.fingerprint, packaged_encoder.fingerprint)
