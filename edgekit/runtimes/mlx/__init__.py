"""Apple MLX: a BERT encoder in mlx.nn, fp32 or affine 8/4-bit weights (Metal on Apple silicon, CPU on Linux)."""
