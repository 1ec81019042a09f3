"""A tiny random-init CLIP in open_clip's own hub layout, so CLIP code paths run offline in well under a second.

The architecture is registered in open_clip's model-config registry (``add_model_config``) as ``TinyCLIP-test``;
the weights are random (fixed seed) and saved with :func:`recommender.clip.save_clip_model`, i.e. as
``open_clip_config.json`` + ``open_clip_model.safetensors`` — the layout of ``laion/CLIP-*`` repositories.
The BPE tokenizer is the one shipped inside the open_clip package, so nothing is downloaded.

Not a test module: imported by tests (``from tests.tiny_clip import build_tiny_clip``).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

TINY_ARCHITECTURE = "TinyCLIP-test"
TINY_EMBED_DIM = 32
TINY_IMAGE_SIZE = 32
TINY_CONFIG = {
    "embed_dim": TINY_EMBED_DIM,
    "vision_cfg": {"image_size": TINY_IMAGE_SIZE, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
    # vocab_size must stay 49408 (the real CLIP BPE vocabulary); width 16 keeps the token table at ~3 MB.
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1},
}
SEED = 1234


def register_tiny_architecture() -> str:
    """Add ``TinyCLIP-test`` to open_clip's model-config registry (once per process); returns its name."""
    import open_clip

    if TINY_ARCHITECTURE not in open_clip.list_models():
        registry_dir = Path(tempfile.gettempdir()) / f"tiny-clip-registry-{os.getpid()}"
        registry_dir.mkdir(parents=True, exist_ok=True)
        config_file = registry_dir / f"{TINY_ARCHITECTURE}.json"
        config_file.write_text(json.dumps(TINY_CONFIG), encoding="utf-8")
        open_clip.add_model_config(config_file)
    return TINY_ARCHITECTURE


def build_tiny_clip(directory: str | os.PathLike) -> Path:
    """Random-init the tiny CLIP with a fixed seed and save it to ``directory`` (created); returns the directory."""
    import open_clip
    import torch

    from recommender.clip import save_clip_model

    register_tiny_architecture()
    torch.manual_seed(SEED)
    model = open_clip.create_model(TINY_ARCHITECTURE, pretrained=None, pretrained_text=False, load_weights=False)
    return save_clip_model(model, TINY_CONFIG, directory)
