#!/bin/bash
# The MNIST split-inference results of docs/results.md, every step with its command, in order.
# Run from the worktree root as root (the device emulation and the testbed need cgroups and netns).
# Every heavy step runs under nice: the development machine is shared.
#   STEPS="eval live" bench/split_mnist.sh     # only some steps (default: all)
set -euo pipefail
E=.venv/bin/edgecloud
T=../shared/data/traces
TEACHER=artifacts/mnist-w8-teacher
B=artifacts/mnist-split
DEADLINE_MS=${DEADLINE_MS:-100}
CPU_FRACTION=${CPU_FRACTION:-0.25}
STEPS=${STEPS:-"teacher build profile train eval live kill"}
log() { echo "== $(date -u +%T) $*"; }
want() { [[ " $STEPS " == *" $1 "* ]]; }

if want teacher; then
  log teacher  # width 8, one epoch: the smallest ResNet-18 that reaches ~98.6% here in ~12 CPU-minutes
  mkdir -p artifacts
  echo '{"teacher": {"width": 8, "epochs": 1}}' > artifacts/mnist-w8.json
  nice -n 10 $E train-teacher --dataset mnist --data-dir ../shared/data/mnist --out $TEACHER \
    --config artifacts/mnist-w8.json --no-progress
fi
if want build; then
  log build
  nice -n 10 $E split build --teacher $TEACHER/teacher.pt --dataset mnist --data-dir ../shared/data/mnist \
    --out $B --epochs 1 --max-train-samples 5000 --no-progress
fi
if want profile; then
  log profile-server
  nice -n 10 $E profile --bundle $B --role server --cpus 1 --request-overhead
  log profile-device
  nice -n 10 $E profile --bundle $B --role device --cpus 0 --cpu-fraction "$CPU_FRACTION" --request-overhead
fi
if want train; then
  log train
  nice -n 10 $E split train --bundle $B --deadline-ms "$DEADLINE_MS" --steps 15000 --no-dqn --traces $T/fcc $T/norway-hsdpa --no-progress
fi
if want eval; then
  log eval
  nice -n 10 $E split eval --bundle $B --traces $T/norway-hsdpa-test --deadline-ms "$DEADLINE_MS" \
    --strategies sac device_only server_only neurosurgeon edgent oracle --out artifacts/split-eval
fi
if want live; then
  log live  # three test traces: the live mean per strategy against the environment's prediction
  nice -n 10 $E split eval --bundle $B --traces $T/norway-hsdpa-test --deadline-ms "$DEADLINE_MS" --live \
    --max-traces 3 --duration-s 30 --data-dir ../shared/data/mnist \
    --strategies sac server_only --out artifacts/split-live
fi
if want kill; then
  log live-kill  # the server SIGKILLed 15 s into each run: every request must still be answered
  nice -n 10 $E split eval --bundle $B --traces $T/norway-hsdpa-test --deadline-ms "$DEADLINE_MS" --live \
    --max-traces 1 --duration-s 30 --kill-at-s 15 --data-dir ../shared/data/mnist \
    --strategies server_only sac --out artifacts/split-live-kill
fi
log done
