"""SL offloading (Zhang et al. §V): logit features, QBC sampling, offloader models, baseline filters.

numpy and scikit-learn only; the edge agent imports this package, so it never imports torch.

features (input checks, logits as features) -> qbc (Algorithm 2's balanced training set) ->
models (the six candidates) -> filters (offload decisions by name) -> operating_point (threshold on
val by budget or target accuracy) -> train (the whole pipeline) -> report (tables and figure).
"""
