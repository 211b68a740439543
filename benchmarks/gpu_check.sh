#!/usr/bin/env bash
# The checks to run on a machine with a CUDA GPU, in one go: the test suite on the GPU, the speed benchmark on the
# GPU (and the CPU beside it), benchmarks/peers.py on the GPU, and a 2-process torchrun job. Usage: bash benchmarks/gpu_check.sh [LOGDIR]
# Uses the python3 that holds torch; aekit is taken from src/ (nothing is installed). On one H100 with 16 CPU
# cores (2026-11-27) the suite's first 492 of 494 tests took 300 s and the steps after it 130 s. The suite has
# grown since, and one command may run 10 minutes: only the modules that train on the device run here (the CUDA
# graph's and the loop's first), within 280 s; the CPU-only ones are CI's. Give the whole call about 9.5 minutes.
set -u
logs=${1:-gpu-check-logs}
mkdir -p "$logs"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
{ nvidia-smi -L; python3 -c "import torch, sklearn; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0), '| scikit-learn', sklearn.__version__)"; } 2>&1 | tee "$logs/device.txt"
echo "== test suite with --device cuda (the modules that train on the device; the CUDA graph's and the loop's first)"
lead="tests/test_graphs.py tests/test_train.py tests/test_mlpgrad.py"
others=$(grep -l AEKIT_TEST_DEVICE tests/test_*.py | grep -v -x -F "$(echo $lead | tr ' ' '\n')")
timeout 280 python3 -m pytest -q -rfE -p no:cacheprovider --device cuda $lead $others > "$logs/tests.txt" 2>&1
grep -E "^(FAILED|ERROR)|passed|failed" "$logs/tests.txt" | tail -30
echo "== speed: chapter model on MNIST, GPU"
timeout 70 python3 benchmarks/train_speed.py --device cuda --epochs 3 --rounds 2 --no-progress 2>&1 | grep -v "^epoch" | tee "$logs/speed-gpu.txt"
echo "== peers: aekit (fp32, bf16; the step a CUDA graph) and the bare PyTorch loop on the GPU, epochs alternating (Keras-on-JAX if installed)"
XLA_PYTHON_CLIENT_PREALLOCATE=false timeout 120 python3 benchmarks/peers.py --device cuda --epochs 6 --precision bf16 --eager 2>&1 | tee "$logs/peers-gpu.txt"
echo "== torchrun: 2 processes (gloo, CPU tensors: 2 NCCL ranks need 2 GPUs) on MNIST"
timeout 50 python3 -m torch.distributed.run --standalone --nproc_per_node=2 -m aekit train --epochs 2 --device cpu \
    --out /tmp/aekit-ddp --overwrite --no-progress 2>&1 | tail -8 | tee "$logs/torchrun.txt"
echo "== one process on the GPU, same job"
timeout 40 python3 -m aekit train --epochs 2 --device cuda --out /tmp/aekit-gpu --overwrite --no-progress 2>&1 | tail -8 | tee "$logs/train-gpu.txt"
