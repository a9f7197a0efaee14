"""SL offloading (Zhang et al. §V): logit features, QBC sampling, offloader models, baseline filters.

numpy and scikit-learn only; never torch. Run time (what the edge imports): features (input checks;
sorted logits and the confidence filters' scores; log_softmax), scoring (a trained offloader's score,
the Platt-calibrated wrapper it ships in), filters (offload decisions by name) and fusion (beyond the
paper: the rule that answers an offloaded sample from both networks' probabilities).

Training (never imported online, tests/serving/test_online_imports.py): calibration (fitting
temperature and Platt scaling) -> qbc (Algorithm 2's balanced training set) -> models (the paper's
six candidates and a logistic regression) -> operating_point (threshold on val: reach the teacher or
a target, the model's boundary, or a budget) -> fusion_tuning (the fusion's parameters on val) ->
comparison (table rows and curves) -> train (the whole pipeline) -> report (tables and figure).
"""
