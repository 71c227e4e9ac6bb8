"""Small language models: the default decoder, prefill/decode timing, perplexity and next-token fidelity.

The pipeline's ``decoder_*`` stages run these on the ``decoder:`` section of params.yaml, beside the encoder.

Example:
    >>> from edgekit.tasks.generation.metrics import next_token_fidelity
    >>> next_token_fidelity(reference_logits, variant_logits, targets)["kl_mean"]
"""
