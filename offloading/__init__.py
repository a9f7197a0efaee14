"""SL offloading (Zhang et al. §V): logit features, QBC sampling, offloader models, baseline filters.

numpy and scikit-learn only; the edge agent imports this package, so it never imports torch.

features (input checks; sorted logits and the confidence filters' scores) -> calibration
(temperature and Platt scaling) -> qbc (Algorithm 2's balanced training set) -> models (the paper's
six candidates and a logistic regression) -> filters (offload decisions by name) -> operating_point
(threshold on val: reach the teacher or a target, the model's boundary, or a budget) -> fusion
(beyond the paper: answers from both networks' probabilities) -> comparison (table rows and
curves) -> train (the whole pipeline) -> report (tables and figure).
"""
