"""Microsoft Olive: ONNX variants made by Olive's own passes, loaded and run by ONNX Runtime."""
