#!/usr/bin/env bash
# The wheels gpu_check.sh needs on a device machine whose python3 already holds torch, transformers, timm,
# scipy and pillow (Python 3.12, no registry there): the packages this project's import of the benchmark and
# test_pipeline.py reaches that such an image lacks, at the versions in this .venv. Saved in .whl/ (ignored).
# Found by recording sys.modules of both runs and subtracting that image's package list.
#   bash benchmarks/gpu_wheels.sh   # then, there:
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && PYTHONPATH=/tmp/site PY=python3 bash benchmarks/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >> .git/info/exclude
PKGS="ImageHash brotli chromadb defusedxml dill ftfy googleapis-common-protos httpcore2 httpx2 jsonschema
jsonschema-specifications referencing rpds-py open_clip_torch opentelemetry-api opentelemetry-exporter-otlp-common
opentelemetry-exporter-otlp-proto-common opentelemetry-exporter-otlp-proto-grpc opentelemetry-proto opentelemetry-sdk
opentelemetry-semantic-conventions orjson overrides pybase64 pydantic pydantic-settings pydantic_core python-dotenv
tenacity truststore typing-inspection wcwidth annotated-types"
spec=$(for p in $PKGS; do echo "$p==$(.venv/bin/python -c "import importlib.metadata as m; print(m.version('$p'))")"; done)
platforms=$(for t in manylinux_2_28 manylinux_2_27 manylinux_2_17 manylinux2014 manylinux1; do echo --platform "${t}_x86_64"; done)
# shellcheck disable=SC2086
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $platforms -d .whl $spec
du -sh .whl
