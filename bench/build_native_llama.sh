#!/usr/bin/env bash
# llama.cpp compiled for this CPU, as the reference side of bench_llama.py: llama-cpp-python built from its sdist
# (GGML_NATIVE, so every instruction set the CPU has) into bench/out/native-venv. Takes ~8 min on 2 cores.
# Never a product dependency: the app runs llama.cpp through xllamacpp's prebuilt wheel.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
VENV=bench/out/native-venv
python -m venv --system-site-packages "$VENV"
CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" "$VENV/bin/pip" install --no-cache-dir --no-binary llama-cpp-python \
  "llama-cpp-python==$VERSION" diskcache
"$VENV/bin/python" -c "import llama_cpp; print(llama_cpp.llama_print_system_info().decode())"
