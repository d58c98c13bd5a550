#!/usr/bin/env bash
# Issue 21's and 33's CUDA checks as one short run (device time is scarce): the fp16-vs-fp32 test, then the pipeline
# benchmark on the GPU with 1,200 photos (one in three 12 MP), with 1, 2, 4, 8 and 16 decode workers (threads and
# processes). Needs the project's venv with a CUDA torch, or PY=python3 with the packages on PYTHONPATH.
#   bash benchmarks/gpu_check.sh            # about 3-5 minutes on one H100 with 16 cores
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
"$PY" -m pytest -q tests/test_pipeline.py -k "cuda or autocast or bit_identical"
"$PY" benchmarks/pipeline_bench.py --device cuda --images 1200 --rounds 1 --vit --workers "${WORKERS:-1,2,4,8,16}"
