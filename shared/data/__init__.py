"""Dataset readers behind `shared.datasets`: one module per on-disk format, numpy only.

Import the public names from `shared.datasets`; these modules are its insides.
"""
