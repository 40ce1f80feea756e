#!/usr/bin/env bash
# Median wall time of one full training step (feedback and forward updates) per
# rule, on the same network (MLP 5x256 tanh), batch (128 Fashion-MNIST images)
# and machine, in one process; ratios to back-prop.
#   bash benchmarks/step_time.sh
set -euo pipefail
cd "$(dirname "$0")/.."
targetprop bench --rules bp,tp,dtp,drl,ldrl,bengio2014 --data fashion-mnist --arch mlp:256x5 --batch-size 128 \
    --repeats 300 --json benchmarks/results/step_time_cpu.json
