"""What is specific to a model kind. ``generation`` (decoder-only language models) lives here; the
sentence-embedding kind is still spread over ``edgekit.embedding``, ``edgekit.quality`` and the pipeline.
"""
