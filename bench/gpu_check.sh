#!/usr/bin/env bash
# Issue 17's GPU check in one prepared run; docs/benchmarks.md keeps its figures.
#
# Here, once (pip reaches the registries; the GPU machine reaches nothing):
#     bash bench/gpu_check.sh --fetch
#   puts the wheels the GPU image lacks (Python 3.12) into .whl/, and MNIST's test files and
#   the two benchmark models (out/report-pages, trained by bench/report_pages.py or
#   bench/peers.py) into .gpu/; both folders are ignored through .git/info/exclude.
# There, with the device tool:
#     run(command="bash bench/gpu_check.sh", carry=[".whl", ".gpu"], timeout_s=560)
#   runs the CUDA-marked tests, the ResNet-18 throughput case at batch 512 (passes per second
#   against a bare forward+backward loop; target ≥ 70%), and one MNIST audit end to end
#   through the service on CUDA. Each one's output goes under $OUT (out/gpu-check elsewhere).
set -uo pipefail
cd "$(dirname "$0")/.."
WHEELS=(alembic amqp annotated-types billiard celery chardet click-didyoumean click-plugins
        click-repl croniter fastapi kombu mako opentelemetry-api prompt-toolkit psycopg
        psycopg-binary pydantic pydantic-core pydantic-settings python-dotenv
        python-multipart redis sqlalchemy standardwebhooks starlette torchattacks
        typing-inspection tzlocal uvicorn vine wcwidth)

if [ "${1:-}" = "--fetch" ]; then
    for folder in /.whl/ /.gpu/; do
        grep -qx "$folder" .git/info/exclude 2>/dev/null || echo "$folder" >> .git/info/exclude
    done
    rm -rf .whl .gpu && mkdir -p .whl .gpu/data/MNIST/raw .gpu/models || exit 1
    for name in "${WHEELS[@]}"; do  # the versions the tests pass with here
        version=$(.venv/bin/python -c "import importlib.metadata as m; print(m.version('$name'))")
        .venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
            --implementation cp --platform manylinux_2_28_x86_64 \
            --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
            -d .whl "$name==$version" || { echo "no wheel for $name==$version"; exit 1; }
    done
    cp "${DATA_ROOT:-../shared/data}"/MNIST/raw/t10k-* .gpu/data/MNIST/raw/ || exit 1
    for model in normal fgsm-at; do
        mkdir -p ".gpu/models/$model"
        cp "out/report-pages/$model/model.safetensors" "out/report-pages/$model/model.json" \
            ".gpu/models/$model/" || { echo "train the models first (bench/peers.py)"; exit 1; }
    done
    du -sh .whl .gpu
    exit 0
fi

OUT=${OUT:-out/gpu-check}
mkdir -p "$OUT"
status=0
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site
# The project itself, with its entry points (the service's and workers' CLI commands).
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir \
    --target /tmp/site . || exit 1
export PYTHONUNBUFFERED=1 ROBUSTNESS_TEST_DATA_ROOT=.gpu/data
{ date -u; nvidia-smi; python3 -c "import torch; print(torch.__version__, torch.cuda.get_device_name())"; } \
    2>&1 | tee "$OUT/device.txt"
timeout 150 python3 -m pytest -m cuda -q -p no:cacheprovider -o addopts="" \
    tests/test_devices.py tests/test_batching.py \
    2>&1 | tee "$OUT/pytest.log" || status=1
timeout 150 python3 bench/peers.py --cases resnet --device cuda --resnet-n 8192 \
    --resnet-batch 512 --out "$OUT/resnet.json" 2>&1 | tee "$OUT/resnet.log" || status=1
timeout 200 python3 bench/gpu_service_audit.py --data-root .gpu/data \
    --model .gpu/models/fgsm-at/model.safetensors --n 1000 --out "$OUT/service.json" \
    2>&1 | tail -60 | tee "$OUT/service.log" || status=1
exit $status
