"""SL offloading (Zhang et al. §V): logit features, QBC sampling, offloader models, baseline filters.

numpy and scikit-learn only; the edge agent imports this package, so it never imports torch.
"""
