"""Can a classifier over the student's logits beat the confidence thresholds at reaching the teacher? (issue 22)

The shipped offloader (Zhang et al., Algorithm 2) predicts "the student is wrong". Offloading only pays
where the teacher is right and the student wrong ("gain"), and costs where the student is right and the
teacher wrong ("loss"). This benchmark fits, on the validation split (where the teacher's outcomes are
honest: it never trained on them), a multinomial logistic regression over the student's logits and
confidence features that predicts the four outcomes, and scores a sample by P(gain) - P(loss). It
prints, on the test split:

- the ceiling of any offloader (send exactly the gain samples): 1 - P(both wrong), at P(gain) offloaded;
- for the shipped offloader, max-softmax, entropy, margin and the gain model at each C: the smallest
  test offload rate at which cooperation reaches the teacher's test accuracy, and its ratio to the
  best threshold's;
- a paired bootstrap of the test split: in what share of draws each model needs no more offload than
  the best threshold of the same draw (issue 22's target: <= 0.8x in >= 95% of draws).

It reads only the bundle's ONNX files and offloader (a packed bundle will do; no torch):

    .venv/bin/python bench/offloader_gain.py --bundle models/cifar10 --data-dir ../shared/data/cifar10
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from offloading.bundle_figures import onnx_logits
from offloading.features import confidence_features
from offloading.filters import make_filter
from offloading.resampling import bootstrap_reach, rate_to_reach_teacher
from shared.bundle import load_manifest, load_offloader
from shared.datasets import load_for_bundle

FILTERS = ("max_softmax", "entropy", "margin")
# Outcome classes of one sample: what offloading it would do to cooperation's accuracy.
BOTH_RIGHT, GAIN, LOSS, BOTH_WRONG = 0, 1, 2, 3


def outcomes(student_ok: np.ndarray, teacher_ok: np.ndarray) -> np.ndarray:
    return np.select([student_ok & teacher_ok, ~student_ok & teacher_ok, student_ok & ~teacher_ok],
                     [BOTH_RIGHT, GAIN, LOSS], default=BOTH_WRONG)


def gain_features(logits: np.ndarray) -> np.ndarray:
    """Logits, confidence features and the predicted class (one-hot): the gain model's inputs."""
    onehot = np.eye(logits.shape[1])[logits.argmax(1)]
    return np.hstack([confidence_features(logits), logits, onehot])


def fit_gain(features: np.ndarray, outcome: np.ndarray, c: float):
    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000)).fit(features, outcome)


def gain_scores(model, features: np.ndarray) -> np.ndarray:
    """P(gain) - P(loss): higher = offloading this sample more likely helps."""
    proba = model.predict_proba(features)
    classes = list(model.classes_)
    column = {k: proba[:, classes.index(k)] if k in classes else 0.0 for k in (GAIN, LOSS)}
    return np.asarray(column[GAIN] - column[LOSS], dtype=np.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, required=True, help="a bundle with student, teacher and offloader")
    parser.add_argument("--data-dir", type=Path, default=None, help="dataset folder (not needed for digits)")
    parser.add_argument("--c", type=float, nargs="+", default=[0.01, 0.1], help="inverse L2 strengths to try")
    parser.add_argument("--draws", type=int, default=500, help="paired bootstrap draws of the test split")
    args = parser.parse_args()

    manifest = load_manifest(args.bundle, verify=True)
    data = load_for_bundle(manifest, data_dir=args.data_dir)
    student, teacher = manifest.student_entry(), manifest.models[manifest.teacher]
    started = time.perf_counter()
    logits = {split: {who: onnx_logits(args.bundle / str(entry.file), getattr(data, split).x, manifest)
                      for who, entry in (("student", student), ("teacher", teacher))}
              for split in ("val", "test")}
    ok = {split: {who: logits[split][who].argmax(1) == getattr(data, split).y for who in ("student", "teacher")}
          for split in ("val", "test")}
    print(f"logits of {len(data.val.y)} validation and {len(data.test.y)} test samples: "
          f"{time.perf_counter() - started:.1f} s")
    s_ok, t_ok = ok["test"]["student"], ok["test"]["teacher"]
    print(f"test: student {s_ok.mean():.4f}, teacher {t_ok.mean():.4f}; gain {np.mean(~s_ok & t_ok):.4f}, "
          f"loss {np.mean(s_ok & ~t_ok):.4f}, both wrong {np.mean(~s_ok & ~t_ok):.4f}")
    print(f"ceiling of any offloader: {1 - np.mean(~s_ok & ~t_ok):.4f} at {np.mean(~s_ok & t_ok):.4f} offloaded\n")

    s_test = logits["test"]["student"]
    scores = {name: make_filter(name).scores(s_test) for name in FILTERS}
    scores["shipped"] = make_filter("sl", offloader=load_offloader(args.bundle, manifest)).scores(s_test)
    val_outcome = outcomes(ok["val"]["student"], ok["val"]["teacher"])
    for c in args.c:
        model = fit_gain(gain_features(logits["val"]["student"]), val_outcome, c)
        scores[f"gain C={c}"] = gain_scores(model, gain_features(s_test))
    best = min(rate_to_reach_teacher(scores[name], s_ok, t_ok) for name in FILTERS)
    print("| score | test offload to reach the teacher | / best threshold | bootstrap: <= best threshold |")
    print("|---|---:|---:|---:|")
    for name, score in scores.items():
        rate = rate_to_reach_teacher(score, s_ok, t_ok)
        share = ""
        if name not in FILTERS:
            rivals = {f: scores[f] for f in FILTERS}
            draws = bootstrap_reach({name: score, **rivals}, s_ok, t_ok, shipped=name, draws=args.draws)
            share = f"{draws.share_no_more:.0%}"
        print(f"| {name} | {rate:.4f} | {rate / best:.3f} | {share} |")


if __name__ == "__main__":
    main()
