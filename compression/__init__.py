"""Offline half: teacher training, RL layer removal/shrinkage, similarity-preserving KD, ONNX export."""
