"""One module per `edgecloud` subcommand; each exposes `add_parser(subparsers)`.

Modules here import only argparse-level things at import time: heavy libraries (torch, onnxruntime)
are imported inside the handlers, so `edgecloud edge ...` never pulls in torch.
"""
