"""Deployment: a filter as an int8 ONNX model for ONNX Runtime, calibrated on training frames and checked on
validation frames."""
