"""The offline embedder gives normalised 384-d vectors that rank related text first."""

from __future__ import annotations

import numpy as np
import pytest

from memory.embeddings import LOCAL_DIMS, EmbeddingsUnavailableError, load_embeddings


def test_local_embeddings_are_unit_vectors_that_rank_meaning() -> None:
    loaded = load_embeddings("local")
    assert loaded is not None
    embedder, dims = loaded
    assert dims == LOCAL_DIMS
    docs = embedder.embed_documents(
        ["I am allergic to penicillin", "I prefer express shipping", "My dog is called Rex"]
    )
    vectors = np.array(docs)
    assert vectors.shape == (3, LOCAL_DIMS)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    scores = vectors @ np.array(embedder.embed_query("which antibiotics should I avoid?"))
    assert int(np.argmax(scores)) == 0
    assert embedder.embed_query("same text") == embedder.embed_query("same text")


def test_embeddings_setting() -> None:
    assert load_embeddings("none") is None
    with pytest.raises(EmbeddingsUnavailableError):
        load_embeddings("nonsense")
