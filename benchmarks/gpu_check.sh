#!/usr/bin/env bash
# GPU checks and figures, for a machine with a CUDA build of torch (CI never has
# one): every rule trains on CUDA for two Fashion-MNIST epochs; the chain rules
# on the conv net cnn:32-64-128, on a user's own nn.Sequential with batch norms
# (examples/conv_net.py) and on resnet20 too; bp, dtp and ldrl on rnn:128 (the images
# read row by row); bp and dtp on the copy problem (a target at every step); bp, dtp and
# ldrl on tree:128 (listops, depth 5: the levels of trees of many shapes);
# bp and dtp once more under precision=bf16; a small sweep in two processes. Then the step
# times of `targetprop bench` on the GPU: MLP (eager, compiled whole and the
# feedback objective alone, side by side), conv net (eager, compiled and
# bf16 side by side), resnet20 (eager and bf16), rnn:100 on the adding problem at T = 100 and
# tree:128 on listops at depth 8. Writes
# gpu_check.md and the raw results under OUT_DIR (default benchmarks/results/gpu).
#   bash benchmarks/gpu_check.sh [OUT_DIR]
# (DEVICE, DATA and REPEATS override cuda, fashion-mnist and 300, for a dry run.)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-benchmarks/results/gpu}
mkdir -p "$out/runs"
device=${DEVICE:-cuda} data=${DATA:-fashion-mnist} repeats=${REPEATS:-300}
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
python3 -c "import torch; print('torch', torch.__version__, '|',
            torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')" | tee "$out/device.txt"
train() {  # train NAME ARGS...: two epochs on the device, logged to runs/NAME.log, its last line echoed
    local name=$1; shift
    python3 -m targetprop.cli train --epochs 2 --device "$device" --no-progress --out "$out/runs/$name" "$@" \
        > "$out/runs/$name.log" 2>&1
    echo "$name: exit $? | $(tail -n 1 "$out/runs/$name.log")"
}
for rule in bp tp dtp drl ldrl ddtp fwdtp ccl bengio2014 generative generative-bp; do
    train "$rule" --data "$data" --rule "$rule"
done
for rule in bp tp dtp drl ldrl ddtp fwdtp; do
    train "cnn-$rule" --data "$data" --rule "$rule" --arch cnn:32-64-128
    train "own-conv-$rule" --data "$data" --rule "$rule" --arch examples/conv_net.py:conv_net
    train "resnet20-$rule" --data "$data" --rule "$rule" --arch resnet20
done
for rule in bp dtp ldrl; do  # a recurrent net reading the images row by row
    train "rnn-$rule" --data "$data" --rule "$rule" --arch rnn:128
done
for rule in bp dtp; do  # a target at every step (the copy problem): the read-out on every state
    train "copy-$rule" --data copy --set seq_len=30 --rule "$rule" --arch rnn:64
done
for rule in bp dtp ldrl; do  # a tree net, level by level
    train "tree-$rule" --data listops --set tree_depth=5 --rule "$rule" --arch tree:128
done
for rule in bp dtp; do
    for arch in mlp:256x5 cnn:32-64-128 resnet20; do
        train "bf16-$rule-${arch%%:*}" --data "$data" --rule "$rule" --arch "$arch" --set precision=bf16
    done
done
python3 -m targetprop.cli sweep --rule dtp --data "$data" --space benchmarks/sweep_space.yaml --trials 4 --epochs 2 \
    --jobs 2 --device "$device" --out "$out/runs/sweep-dtp" > "$out/runs/sweep-dtp.log" 2>&1
echo "sweep-dtp (4 trials, 2 processes on one GPU): exit $? | $(tail -n 2 "$out/runs/sweep-dtp.log" | head -n 1)"
python3 -m targetprop.cli bench --device "$device" --data "$data" --arch cnn:32-64-128 --rules bp,tp,dtp,drl,ldrl \
    --repeats "$repeats" --json "$out/step_time_cnn_cuda.json" | tee "$out/step_time_cnn_cuda.txt"
python3 -m targetprop.cli bench --device "$device" --data "$data" --arch cnn:32-64-128 --rules bp,dtp,ldrl \
    --variants eager,compile,bf16,bf16+compile --repeats "$repeats" --json "$out/step_time_cnn_variants_cuda.json" | tee "$out/step_time_cnn_variants_cuda.txt"
python3 -m targetprop.cli bench --device "$device" --data "$data" --arch resnet20 --rules bp,dtp,drl,ldrl \
    --variants eager,bf16 --repeats "$repeats" --json "$out/step_time_resnet20_cuda.json" | tee "$out/step_time_resnet20_cuda.txt"
python3 -m targetprop.cli bench --device "$device" --data "$data" --rules bp,dtp,drl,ldrl \
    --variants eager,compile,compile-feedback --repeats "$repeats" --json "$out/step_time_variants_cuda.json" | tee "$out/step_time_variants_cuda.txt"
python3 -m targetprop.cli bench --device "$device" --data adding --seq-len 100 --arch rnn:100 --rules bp,dtp,ldrl \
    --repeats "$repeats" --json "$out/step_time_rnn_T100_cuda.json" | tee "$out/step_time_rnn_T100_cuda.txt"
python3 -m targetprop.cli bench --device "$device" --data listops --tree-depth 8 --arch tree:128 --rules bp,dtp,drl,ldrl \
    --repeats "$repeats" --json "$out/step_time_tree_cuda.json" | tee "$out/step_time_tree_cuda.txt"
python3 -m targetprop.cli bench --device "$device" --data "$data" --rules bp,tp,dtp,drl,ldrl,ddtp,fwdtp,ccl,bengio2014 \
    --repeats "$repeats" --flops \
    --json "$out/step_time_cuda.json" | tee "$out/step_time_cuda.txt"
python3 - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
lines = [f"GPU check on {(out / 'device.txt').read_text().strip()}", "",
         "| run | rule | network | test accuracy | test reconstruction | seconds (2 epochs) |",
         "|---|---|---|---|---|---|"]
for run in sorted((out / "runs").iterdir()):
    if (run / "summary.json").is_file():
        s = json.loads((run / "summary.json").read_text())
        fmt = lambda v: "—" if v is None else f"{v:.4f}"
        lines.append(f"| {run.name} | `{s['rule']}` | {s['arch']} | {fmt(s['test_accuracy'])} | {fmt(s['test_reconstruction'])} "
                     f"| {s['seconds']:.1f} |")
(out / "gpu_check.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
PY
