"""Model registry: which models the app can offer, whether each one loads here, and one Recommender per model.

Models come from two places:

* the names configured in ``space_config`` (``baseline``, ``distilroberta``, ``finetuned``, ``clip``…);
* model directories in a local artifacts directory (``$LYRICS_ARTIFACTS_DIR``, default ``<repo>/artifacts``): a
  subdirectory holding ``modules.json`` is a sentence-transformers model, one holding ``open_clip_config.json`` a
  CLIP model; a subdirectory whose ``model/`` child is such a directory (what ``training/finetune.py`` writes)
  counts too, under the subdirectory's name.

Availability is probed by loading each model with :func:`recommender.encoders.load_encoder` (cached per process,
so a probed model is not loaded twice), typically in a background thread started with :meth:`start_probing`;
results are cached. A model that cannot load is listed with the reason instead of failing later.

Only listed names are accepted by :meth:`ModelRegistry.open`: a remote caller cannot make the server load an
arbitrary Hub id or directory.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from recommender.errors import ModelUnavailableError, RecommenderError
from space_config import SETTINGS

logger = logging.getLogger(__name__)

ARTIFACTS_ENV = "LYRICS_ARTIFACTS_DIR"
TEXT_MARKER = "modules.json"
CLIP_MARKER = "open_clip_config.json"
CHECKING = "checking…"


def artifacts_dir() -> Path:
    """The local directory scanned for trained model directories (``$LYRICS_ARTIFACTS_DIR`` or ``<repo>/artifacts``)."""
    return SETTINGS.artifacts_dir


@dataclass(frozen=True)
class ModelEntry:
    """One model the app can offer.

    Attributes:
        name: Name shown in the dropdown and accepted by the API.
        kind: ``"text"`` or ``"clip"``.
        source: ``"settings"`` (configured in ``space_config``) or ``"artifacts"`` (found in the artifacts dir).
        available: True when it loaded, False when it cannot load here, None while not probed yet.
        reason: Why it is unavailable, or the encoder's fallback notice when it loaded through a fallback, or "".
        target: What is passed to ``load_encoder`` / ``Recommender.open`` (the name, or the model directory).
        loaded: ``encoder.describe()`` once loaded (model id, revision, where from), else "".
    """

    name: str
    kind: str
    source: str
    available: bool | None = None
    reason: str = ""
    target: str = ""
    loaded: str = ""

    def public(self) -> dict:
        """The JSON form served by the app's ``/models`` endpoint (no server paths)."""
        reason = CHECKING if self.available is None else self.reason
        if reason and self.source == "artifacts" and self.target:
            reason = reason.replace(str(self.target), f"artifacts/{self.name}")
        return {"name": self.name, "kind": self.kind, "source": self.source, "available": bool(self.available),
                "reason": reason}

    def as_dict(self) -> dict:
        return asdict(self)


def _model_dir_kind(path: Path) -> str | None:
    if (path / CLIP_MARKER).is_file():
        return "clip"
    if (path / TEXT_MARKER).is_file():
        return "text"
    return None


def discover_artifacts(directory: Path, taken: set[str]) -> list[ModelEntry]:
    """Model directories directly under ``directory`` (or in their ``model/`` child), sorted by name."""
    if not directory.is_dir():
        return []
    entries = []
    for child in sorted(directory.iterdir()):
        if not child.is_dir() or child.name.startswith("."):
            continue
        model_dir = child if _model_dir_kind(child) else child / "model"
        kind = _model_dir_kind(model_dir) if model_dir.is_dir() else None
        if kind is None:
            continue
        name = child.name if child.name not in taken else f"artifacts/{child.name}"
        taken.add(name)
        entries.append(ModelEntry(name, kind, "artifacts", target=str(model_dir.resolve())))
    return entries


def _unavailable(entry: ModelEntry) -> str:
    """The reason, naming the model unless the reason already does."""
    if repr(entry.name) in entry.reason:
        return entry.reason
    return f"model {entry.name!r} is unavailable: {entry.reason}"


def _default_loader(target: str):
    from recommender.encoders import load_encoder

    return load_encoder(target)


class ModelRegistry:
    """The models on offer, their availability (probed once, cached), and one loaded Recommender per model.

    Args:
        settings: Where the configured models come from.
        artifacts: Directory scanned for trained models (None: :func:`artifacts_dir`).
        loader: ``target -> encoder``; raises when the model cannot load (default: ``load_encoder``).
        opener: ``target -> Recommender`` (default: ``Recommender.open(model=target)`` on the embedded catalog).
    """

    def __init__(self, settings=SETTINGS, artifacts: str | os.PathLike | None = None,
                 loader: Callable[[str], object] | None = None, opener: Callable[[str], object] | None = None):
        self.settings = settings
        self.artifacts = Path(artifacts) if artifacts is not None else artifacts_dir()
        self._loader = loader or _default_loader
        self._opener = opener
        configured = [ModelEntry(spec.name, spec.kind, "settings", target=spec.name) for spec in settings.models]
        taken = {entry.name for entry in configured}
        self._entries: dict[str, ModelEntry] = {entry.name: entry
                                                for entry in configured + discover_artifacts(self.artifacts, taken)}
        self._lock = threading.Lock()  # guards _entries and _recommenders
        self._open_lock = threading.Lock()  # serializes model loading (models are large)
        self._recommenders: dict[str, object] = {}
        self._probe_locks: dict[str, threading.Lock] = {name: threading.Lock() for name in self._entries}
        self._probe_thread: threading.Thread | None = None
        self._probing_done = threading.Event()

    # --- listing -------------------------------------------------------------------------------------------------

    def list_models(self, *, wait: float | None = None) -> list[ModelEntry]:
        """Every model on offer, configured ones first; ``wait`` seconds for a running probe to finish first."""
        if wait and self._probe_thread is not None:
            self._probing_done.wait(wait)
        with self._lock:
            return list(self._entries.values())

    def names(self, kind: str | None = None) -> list[str]:
        return [entry.name for entry in self.list_models() if kind is None or entry.kind == kind]

    def entry(self, name: str) -> ModelEntry:
        """The entry called ``name``.

        Raises:
            ModelUnavailableError: No model of that name is on offer.
        """
        with self._lock:
            entry = self._entries.get(str(name).strip())
        if entry is None:
            raise ModelUnavailableError(f"unknown model {name!r}: choose one of {', '.join(self._entries)}")
        return entry

    # --- probing -------------------------------------------------------------------------------------------------

    def probe(self, name: str) -> ModelEntry:
        """Load ``name`` once to learn whether it is available here (result cached)."""
        entry = self.entry(name)
        if entry.available is not None:
            return entry
        with self._probe_locks[entry.name]:  # one load per model, even when a search races the probe thread
            entry = self.entry(name)
            if entry.available is not None:
                return entry
            started = time.perf_counter()
            try:
                encoder = self._loader(entry.target)
            except Exception as error:  # a broken model directory raises anything: it is a reason, not a crash
                reason = str(error) if isinstance(error, RecommenderError) else f"{type(error).__name__}: {error}"
                entry = replace(entry, available=False, reason=reason)
                logger.info("model %s is unavailable: %s", entry.name, reason)
            else:
                entry = replace(entry, available=True, kind=getattr(encoder, "kind", entry.kind),
                                reason=getattr(encoder, "notice", None) or "",
                                loaded=encoder.describe() if hasattr(encoder, "describe") else entry.target)
                logger.info("model %s is available (%.1fs): %s", entry.name, time.perf_counter() - started,
                            entry.loaded)
            with self._lock:
                self._entries[entry.name] = entry
            return entry

    def probe_all(self) -> list[ModelEntry]:
        """Probe every model not probed yet, in listing order."""
        try:
            for name in list(self._entries):
                self.probe(name)
        finally:
            self._probing_done.set()
        return self.list_models()

    def start_probing(self) -> threading.Thread:
        """Probe every model in a daemon thread (idempotent); :meth:`list_models` fills in as results arrive."""
        with self._lock:
            if self._probe_thread is None:
                self._probe_thread = threading.Thread(target=self.probe_all, name="model-probe", daemon=True)
                self._probe_thread.start()
            return self._probe_thread

    @property
    def probing_done(self) -> bool:
        return self._probing_done.is_set()

    # --- opening -------------------------------------------------------------------------------------------------

    def is_open(self, name: str) -> bool:
        with self._lock:
            return name in self._recommenders

    def open(self, name: str):
        """The Recommender of model ``name`` on the embedded catalog, loaded (and its embeddings built) once.

        Raises:
            ModelUnavailableError: Unknown name, or the model is known (or found now) not to load here.
            RecommenderError: The catalog or embedding set cannot be loaded.
        """
        entry = self.entry(name)
        with self._lock:
            if entry.name in self._recommenders:
                return self._recommenders[entry.name]
        if entry.available is False:
            raise ModelUnavailableError(_unavailable(entry))
        with self._open_lock:
            with self._lock:
                if entry.name in self._recommenders:
                    return self._recommenders[entry.name]
            entry = self.probe(entry.name)
            if not entry.available:
                raise ModelUnavailableError(_unavailable(entry))
            recommender = self._open(entry.target)
            with self._lock:
                self._recommenders[entry.name] = recommender
            return recommender

    def _open(self, target: str):
        if self._opener is not None:
            return self._opener(target)
        from recommender.service import Recommender, open_serving

        # Configured models are served from the pinned Hub dataset (→ cache → embedded default); local model
        # directories from the artifacts folder always use the embedded default catalog.
        return open_serving(target) if SETTINGS.model(target) else Recommender.open(model=target)


_default: ModelRegistry | None = None
_default_lock = threading.Lock()


def default_registry() -> ModelRegistry:
    """The process-wide registry (configured models + ``artifacts_dir()``), created on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = ModelRegistry()
        return _default


def list_models(*, wait: float | None = None) -> list[ModelEntry]:
    """Every model on offer in the process-wide registry (see :meth:`ModelRegistry.list_models`)."""
    return default_registry().list_models(wait=wait)
