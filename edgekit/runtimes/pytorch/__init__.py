"""PyTorch: the fp32 baseline every variant is compared with."""
