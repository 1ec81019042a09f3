"""CLIP (open_clip) as an encoder: lyrics lines and text queries through the text tower, images through the image tower.

``ClipEncoder`` has the interface of :class:`recommender.encoders.TextEncoder` (``encode``, ``encode_queries``,
``fingerprint``, ``describe``, ``dimension``…) plus ``encode_images``, so lines embedded with CLIP's text tower can be
searched with a photo.

Weights are found along ONE path (``load_clip_encoder``):

1. a weights *source* is resolved to a local file or directory:
   ``pretrained`` as a local path (a weights file, or a directory in open_clip's hub layout:
   ``open_clip_config.json`` + ``open_clip_model.safetensors`` / ``open_clip_pytorch_model.bin``), or
   ``hub_id@revision`` through :func:`recommender.hub.resolve_snapshot` (Hub, else the HF cache when offline),
   which yields such a directory; an open_clip pretrained *tag* (``laion2b_s34b_b79k``) is only a name for its
   hub id in open_clip's pretrained registry;
2. the model is built by open_clip from the directory's ``open_clip_config.json`` when there is one, else from the
   ``architecture`` name in open_clip's model-config registry, without any weights;
3. the weights file is loaded into it (``open_clip.load_checkpoint``, strict).

Nothing is ever downloaded behind that path's back, and missing weights are a :class:`ModelUnavailableError`
("no CLIP weights available: …"), never a randomly initialised model.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from huggingface_hub.errors import LocalEntryNotFoundError

from recommender.encoders import PROBE_SENTENCES, make_fingerprint
from recommender.errors import ModelUnavailableError
from recommender.hub import resolve_snapshot
from space_config import SETTINGS

logger = logging.getLogger(__name__)

CONFIG_NAME = "open_clip_config.json"
SAFETENSORS_NAME = "open_clip_model.safetensors"
# Weight files of open_clip's hub layout, in the order open_clip itself prefers them.
WEIGHTS_NAMES = (SAFETENSORS_NAME, "open_clip_pytorch_model.safetensors", "open_clip_pytorch_model.bin",
                 "open_clip_pytorch_model.pth")
WEIGHTS_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")
DEFAULT_CONTEXT_LENGTH = 77


@dataclass
class ClipEncoder:
    """An open_clip model plus where it came from (same attributes as ``TextEncoder``).

    Attributes:
        model: The open_clip model (``encode_text`` / ``encode_image``), in eval mode.
        name: The name the user asked for (``clip``, ``clip:<dir>``, a Hub id…).
        model_id: What was actually loaded (Hub id, or the local path of the weights).
        revision: Commit hash of the Hub snapshot, when known.
        source: ``hub``, ``cache`` or ``local``.
        notice: A notice to show the user (e.g. served from the HF cache), or None.
        threshold: Cosine under which a matched line counts half (calibrated for this model).
        kind: Always ``"clip"``.
        tokenizer: open_clip tokenizer; texts longer than its context are truncated by it, never dropped.
        preprocess: open_clip's inference image transform (resize, centre crop, normalise).
        last_encode_report: Facts about the last ``encode`` call: ``{"clip_truncated_lines": N}``.
    """

    model: object
    name: str
    model_id: str
    revision: str | None
    source: str
    notice: str | None = None
    threshold: float = SETTINGS.default_threshold
    kind: str = "clip"
    tokenizer: object = field(default=None, repr=False)
    preprocess: object = field(default=None, repr=False)
    last_encode_report: dict = field(default_factory=dict)
    _fingerprint: dict | None = field(default=None, repr=False)
    _dimension: int | None = field(default=None, repr=False)

    @property
    def device(self):
        import torch

        parameter = next(self.model.parameters(), None)
        return parameter.device if parameter is not None else torch.device("cpu")

    @property
    def context_length(self) -> int:
        return int(getattr(self.tokenizer, "context_length", None) or DEFAULT_CONTEXT_LENGTH)

    @property
    def dimension(self) -> int:
        if self._dimension is None:
            self._dimension = int(self._encode_text(["a"], batch_size=1).shape[1])
        return self._dimension

    def count_truncated(self, texts: Sequence[str]) -> int:
        """How many texts are longer than the tokenizer's context (start/end tokens included)."""
        return sum(1 for text in texts if self._token_count(text) > self.context_length)

    def _token_count(self, text: str) -> int:
        if hasattr(self.tokenizer, "encode"):  # open_clip SimpleTokenizer: BPE ids without start/end tokens
            return len(self.tokenizer.encode(text)) + 2
        inner = getattr(self.tokenizer, "tokenizer", None)  # open_clip HFTokenizer wraps a transformers tokenizer
        if inner is not None:
            return len(inner(text)["input_ids"])
        return 0

    def encode(self, texts: list[str], *, batch_size: int = SETTINGS.encode_batch_size,
               show_progress_bar: bool = False) -> np.ndarray:
        """Unit-length float32 text-tower embeddings, one row per text.

        Texts over the context length (77 tokens) are truncated by the tokenizer and counted in
        ``last_encode_report["clip_truncated_lines"]``.
        """
        texts = list(texts)
        truncated = self.count_truncated(texts)
        if truncated:
            logger.info("CLIP: %d of %d texts are longer than %d tokens and were truncated", truncated, len(texts),
                        self.context_length)
        vectors = self._encode_text(texts, batch_size=batch_size, show_progress_bar=show_progress_bar)
        self.last_encode_report = {"clip_truncated_lines": truncated}
        return vectors

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        """Text queries go through the same text tower as the lines."""
        return self.encode(texts)

    def encode_images(self, images: Sequence, *, batch_size: int = 32) -> np.ndarray:
        """Unit-length float32 image-tower embeddings, one row per image.

        Each item may be a PIL image, a path or raw bytes: it goes through :func:`recommender.images.load_image`
        (RGB, EXIF rotation, first frame, size limits — bad images raise ``QueryError``), then open_clip's transform.
        """
        import torch

        from recommender.images import load_image

        pictures = [load_image(image) for image in images]
        if not pictures:
            return np.zeros((0, self.dimension), dtype=np.float32)
        chunks = []
        with torch.inference_mode():
            for start in range(0, len(pictures), batch_size):
                batch = torch.stack([self.preprocess(picture) for picture in pictures[start:start + batch_size]])
                features = self.model.encode_image(batch.to(self.device), normalize=True)
                chunks.append(features.float().cpu().numpy())
        return _unit_rows(np.concatenate(chunks))

    def _encode_text(self, texts: list[str], *, batch_size: int, show_progress_bar: bool = False) -> np.ndarray:
        import torch

        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        starts = range(0, len(texts), max(1, int(batch_size)))
        if show_progress_bar:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="CLIP text", unit="batch")
        chunks = []
        with torch.inference_mode():
            for start in starts:
                tokens = self.tokenizer(texts[start:start + batch_size]).to(self.device)
                chunks.append(self.model.encode_text(tokens, normalize=True).float().cpu().numpy())
        vectors = _unit_rows(np.concatenate(chunks))
        self._dimension = int(vectors.shape[1])
        return vectors

    @property
    def fingerprint(self) -> dict:
        """Text-tower probe embeddings that identify this model's behaviour (stored in every embedding manifest)."""
        if self._fingerprint is None:
            self._fingerprint = make_fingerprint(self._encode_text(list(PROBE_SENTENCES), batch_size=8))
        return self._fingerprint

    def describe(self) -> str:
        revision = f"@{self.revision[:12]}" if self.revision else ""
        return f"{self.name} ({self.model_id}{revision}, from {self.source})"


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def _weights_in(directory: Path) -> Path | None:
    for name in WEIGHTS_NAMES:
        if (directory / name).is_file():
            return directory / name
    return None


def _read_config(directory: Path) -> dict | None:
    path = directory / CONFIG_NAME
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelUnavailableError(f"CLIP config {path} is unreadable: {error}") from error
    if not isinstance(config, dict) or not isinstance(config.get("model_cfg"), dict):
        raise ModelUnavailableError(f"CLIP config {path} has no 'model_cfg' (not open_clip's hub layout)")
    return config


def _hub_id_for_tag(architecture: str, tag: str) -> str | None:
    """The Hub repository open_clip's pretrained registry lists for ``architecture`` + ``tag``, or None."""
    import open_clip

    hf_hub = (open_clip.get_pretrained_cfg(architecture, tag) or {}).get("hf_hub", "")
    return hf_hub.rstrip("/") or None


@dataclass(frozen=True)
class _WeightsSource:
    weights: Path
    config_dir: Path | None  # directory holding open_clip_config.json, if any
    model_id: str
    revision: str | None
    source: str
    notice: str | None


def _resolve_weights(architecture: str, pretrained: str | None, hub_id: str | None,
                     revision: str | None) -> _WeightsSource:
    """Step 1 of the one path: a local path or a Hub snapshot → a weights file (and its config directory)."""
    if pretrained:
        local = Path(pretrained).expanduser()
        if local.is_file():
            config_dir = local.parent if (local.parent / CONFIG_NAME).is_file() else None
            return _WeightsSource(local, config_dir, str(local.resolve()), None, "local", None)
        if local.is_dir():
            weights = _weights_in(local)
            if weights is None:
                raise ModelUnavailableError(f"no CLIP weights available: {local} holds none of "
                                            f"{', '.join(WEIGHTS_NAMES)}")
            config_dir = local if (local / CONFIG_NAME).is_file() else None
            return _WeightsSource(weights, config_dir, str(local.resolve()), None, "local", None)
        looks_like_path = os.sep in pretrained or pretrained.endswith(WEIGHTS_SUFFIXES) or pretrained.startswith(".")
        tag_hub_id = None if looks_like_path else _hub_id_for_tag(architecture, pretrained)
        if tag_hub_id is None:
            raise ModelUnavailableError(
                f"no CLIP weights available: {pretrained!r} is neither a local weights file or directory nor an "
                f"open_clip pretrained tag of {architecture} with a Hugging Face Hub copy")
        hub_id = hub_id or tag_hub_id
    if not hub_id:
        raise ModelUnavailableError(f"no CLIP weights available: no local weights and no Hub id given for "
                                    f"{architecture}")
    try:
        resolved = resolve_snapshot(hub_id, revision=revision, allow_patterns=[CONFIG_NAME, SAFETENSORS_NAME])
        if _weights_in(resolved.path) is None and resolved.source == "hub":
            # Older open_clip repositories only have the pickled weights.
            resolved = resolve_snapshot(hub_id, revision=revision,
                                        allow_patterns=[CONFIG_NAME, *WEIGHTS_NAMES[1:]])
    except (LocalEntryNotFoundError, OSError, ValueError) as error:
        raise ModelUnavailableError(
            f"no CLIP weights available: {hub_id}{'@' + revision if revision else ''} is not reachable on the Hub "
            f"and not in the local HF cache ({type(error).__name__}); pass a local weights directory instead"
        ) from error
    weights = _weights_in(resolved.path)
    if weights is None:
        raise ModelUnavailableError(f"no CLIP weights available: the snapshot of {hub_id} at {resolved.path} holds "
                                    f"none of {', '.join(WEIGHTS_NAMES)}")
    config_dir = resolved.path if (resolved.path / CONFIG_NAME).is_file() else None
    return _WeightsSource(weights, config_dir, hub_id, resolved.revision, resolved.source, resolved.notice)


class _DropRandomInitWarning(logging.Filter):
    """open_clip warns "initialized randomly" when built without weights; ours are loaded right after."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "initialized randomly" not in record.getMessage()


@contextlib.contextmanager
def _quiet_random_init() -> Iterator[None]:
    root = logging.getLogger()
    quiet = _DropRandomInitWarning()
    root.addFilter(quiet)
    try:
        yield
    finally:
        root.removeFilter(quiet)


def _build_and_load(architecture: str, found: _WeightsSource, device: str):
    """Steps 2 and 3: build the architecture with open_clip (no weights), then load the weights file strictly."""
    import open_clip

    config = _read_config(found.config_dir) if found.config_dir is not None else None
    if config is not None:
        model_name = f"local-dir:{found.config_dir}"
    else:
        if architecture not in open_clip.list_models():
            raise ModelUnavailableError(f"unknown CLIP architecture {architecture!r} and no {CONFIG_NAME} next to "
                                        f"{found.weights}")
        model_name = architecture
    try:
        with _quiet_random_init():
            model, _, preprocess = open_clip.create_model_and_transforms(
                model_name, pretrained=None, load_weights=False, pretrained_image=False, pretrained_text=False,
                device="cpu")
        open_clip.load_checkpoint(model, str(found.weights), strict=True)
        tokenizer = open_clip.get_tokenizer(model_name)
    except Exception as error:  # size mismatches, missing keys, corrupt files (SafetensorError is its own type)
        raise ModelUnavailableError(f"CLIP weights {found.weights} could not be loaded as "
                                    f"{model_name.removeprefix('local-dir:')}: {error}") from error
    model = model.to(device).eval()
    return model, preprocess, tokenizer


def load_clip_encoder(name: str, *, architecture: str, pretrained: str | None, hub_id: str | None,
                      revision: str | None, threshold: float, device: str | None = None) -> ClipEncoder:
    """Resolve CLIP weights along the one path described in the module docstring and load them.

    Args:
        name: The name the user asked for (kept for display).
        architecture: open_clip architecture (``ViT-B-32``); used when the weights have no ``open_clip_config.json``.
        pretrained: A local weights file or directory, or an open_clip pretrained tag (``laion2b_s34b_b79k``,
            resolved to its Hub id through open_clip's registry and then like ``hub_id``); None to use ``hub_id``.
        hub_id: Hugging Face Hub repository in open_clip's layout (``laion/CLIP-ViT-B-32-laion2B-s34B-b79K``).
        revision: Pinned revision of ``hub_id``.
        threshold: Cosine under which a matched line counts half (see ``recommender.calibration``).
        device: ``cpu``/``cuda``; None picks CUDA when available.

    Raises:
        ModelUnavailableError: No weights at the local path or the Hub/HF cache, an unknown architecture, or
            weights that do not fit the architecture.
    """
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    found = _resolve_weights(architecture, pretrained, hub_id, revision)
    model, preprocess, tokenizer = _build_and_load(architecture, found, device)
    encoder = ClipEncoder(model, name, found.model_id, found.revision, found.source, found.notice, threshold,
                          tokenizer=tokenizer, preprocess=preprocess)
    if encoder.notice:
        logger.warning(encoder.notice)
    return encoder


def save_clip_model(model, architecture_config: dict, directory: str | os.PathLike) -> Path:
    """Write ``model`` in open_clip's hub layout: ``open_clip_config.json`` + ``open_clip_model.safetensors``.

    The config is ``{"model_cfg": architecture_config, "preprocess_cfg": {...}}`` as open_clip's
    ``push_to_hf_hub.save_config_for_hf`` writes it, so the directory loads with ``load_clip_encoder`` (as a local
    path or from a Hub/HF-cache snapshot) and with ``open_clip.create_model("local-dir:<directory>")``.
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    visual = getattr(model, "visual", None)
    other = dict(getattr(visual, "preprocess_cfg", {}) or {})
    preprocess_cfg = {key: other[key] for key in ("mean", "std", "interpolation", "resize_mode") if key in other}
    for key in ("mean", "std"):
        value = getattr(visual, f"image_{key}", None)
        if value is not None:
            preprocess_cfg[key] = value
    tensors = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    save_file(tensors, str(directory / SAFETENSORS_NAME))
    config = {"model_cfg": architecture_config, "preprocess_cfg": preprocess_cfg}
    (directory / CONFIG_NAME).write_text(json.dumps(config, indent=2), encoding="utf-8")
    return directory
