"""edgecloud: edge-cloud cooperative DNN inference (command line, build pipeline, evaluation, demo)."""

__version__ = "0.1.0"
