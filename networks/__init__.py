"""Network definitions (torch only): the CIFAR-style ResNets, and the checkpoints that rebuild them.

The offline tools (`compression/`, training) and the cloud's optional torch backend import this
package; nothing that runs on the edge does. A network is rebuilt from its JSON-able ``arch`` dict.
"""
