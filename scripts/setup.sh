#!/usr/bin/env bash
# One-time set-up on a fresh machine (Debian/Ubuntu-like, Python ≥3.10): a virtual environment
# in .venv with llama.cpp, CPU PyTorch, Jupyter and this project. Safe to run again: it skips
# what is already there. Slow part: the first llama-cpp-python build (compiles llama.cpp,
# ~10-25 min on 2 cores); the wheel is kept in ~/.cache/jupyter-minicpm for later runs.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
LLAMA_CPP_VERSION=0.3.36
TORCH_CPU_VERSION=2.13.0

[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip

# PyTorch: the project asks for a range (GPU users bring their CUDA build); on CPU machines
# pin the CPU build first so pip does not fetch a multi-GB CUDA one.
if ! python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    python -m pip install -q torch
  else
    # triton too: tests/torch run the Triton kernels on CPU under its interpreter
    python -m pip install -q "torch==${TORCH_CPU_VERSION}" "triton==3.7.1"
  fi
fi

# llama.cpp: built from source by pip. We pick the CPU features explicitly instead of
# -march=native: native builds enable AMX on Sapphire Rapids, and AMX tiles crash (SIGSEGV in
# llama_decode) inside VMs that do not expose the AMX state, as on our CI machines.
if ! python -c "import llama_cpp" 2>/dev/null; then
  flags="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
  flags="$flags -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
  if grep -qw avx512f /proc/cpuinfo 2>/dev/null; then
    flags="$flags -DGGML_AVX512=ON"
    for f in vbmi vnni bf16; do
      grep -qw "avx512_$f\|avx512$f" /proc/cpuinfo && flags="$flags -DGGML_AVX512_${f^^}=ON"
    done
  fi
  key=$(printf '%s %s' "$LLAMA_CPP_VERSION" "$flags" | sha1sum | cut -c1-12)
  wheels="${XDG_CACHE_HOME:-$HOME/.cache}/jupyter-minicpm/wheels/llama-cpp-$key"
  if ! ls "$wheels"/llama_cpp_python-*.whl >/dev/null 2>&1; then
    echo "building llama-cpp-python $LLAMA_CPP_VERSION ($flags); this takes a while" >&2
    mkdir -p "$wheels"
    CMAKE_ARGS="$flags" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
      python -m pip wheel -q --no-cache-dir --no-deps "llama-cpp-python==$LLAMA_CPP_VERSION" -w "$wheels"
  fi
  python -m pip install -q "$wheels"/llama_cpp_python-*.whl
fi

python -m pip install -q -e ".[test,torch]"

# The sidebar: an editable install cannot build it (no jlpm in pip's isolated build), so build
# it here when Node.js is present; without Node the server, magics and CLI still work.
if command -v node >/dev/null 2>&1; then
  bash scripts/build-labextension.sh
else
  echo "Node.js not found: the JupyterLab sidebar is not built (everything else works)" >&2
fi
echo "set-up done: . .venv/bin/activate" >&2
