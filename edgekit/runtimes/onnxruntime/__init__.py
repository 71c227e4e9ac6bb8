"""ONNX Runtime: export with optimum, transformer fusions, dynamic int8 quantization."""
