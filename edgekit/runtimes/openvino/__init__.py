"""OpenVINO: PyTorch-frontend conversion to IR, nncf weight compression and quantization, CPU plugin."""
