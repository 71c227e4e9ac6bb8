"""llama.cpp runtime: HF→GGUF with the pinned upstream converter, K-quants, per-token embeddings."""
