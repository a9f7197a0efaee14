"""Edge agent: ONNX student + offloader, OIP endpoint, resilient cloud client. Never imports torch."""
