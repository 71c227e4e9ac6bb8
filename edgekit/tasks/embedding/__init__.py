"""Sentence encoders: tokenization and pooling shared by every runtime, Spearman and cosine fidelity, fairness.

The pipeline's ``baseline``, ``optimize``, ``benchmark``, ``evaluate`` and ``select`` stages run these on the
``model:`` and ``variants:`` sections of params.yaml.

Example:
    >>> from edgekit.tasks.embedding.metrics import embed, quality
    >>> quality(embed(backend, encoder, sentences, 32, pooling), reference, sentences, pairs, seed)["retention"]
"""
