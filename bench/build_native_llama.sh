#!/usr/bin/env bash
# llama.cpp built on this machine, as reference sides of bench_llama.py: llama-cpp-python from its sdist.
#   bench/build_native_llama.sh          -> bench/out/native-venv: GGML_NATIVE, every instruction set this CPU has
#   bench/build_native_llama.sh avx2     -> bench/out/native-avx2-venv: the instruction sets of xllamacpp's prebuilt
#                                           wheel (AVX2, FMA, F16C, BMI2; no AVX-512), to tell the build from the rest
#   bench/build_native_llama.sh server   -> bench/out/native-server/bin/llama-server (and llama-bench): llama.cpp's own
#                                           server from the same sdist's vendor/llama.cpp, with the wheel's flags, to
#                                           tell the build from the server (bench/bench_llama_server.py)
# ~8 min each on 2 cores (the server ~20 min). Never a product dependency: the app runs llama.cpp through xllamacpp's prebuilt wheel.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
VENV=bench/out/native-venv
WHEEL_FLAGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX512=OFF"
if [ "${1:-}" = "server" ]; then
  OUT="$PWD/bench/out/native-server"
  WORK="$(mktemp -d)"
  pip download --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$WORK"
  tar xzf "$WORK/llama_cpp_python-$VERSION.tar.gz" -C "$WORK"
  SRC="$WORK/llama_cpp_python-$VERSION/vendor/llama.cpp"
  # shellcheck disable=SC2086
  cmake -S "$SRC" -B "$OUT" -DCMAKE_BUILD_TYPE=Release $WHEEL_FLAGS -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF
  cmake --build "$OUT" -j "$(nproc)" --target llama-server llama-bench
  "$OUT/bin/llama-server" --version
  exit 0
fi
if [ "${1:-}" = "avx2" ]; then
  VENV=bench/out/native-avx2-venv
  export CMAKE_ARGS="$WHEEL_FLAGS"
fi
python -m venv --system-site-packages "$VENV"
CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" "$VENV/bin/pip" install --no-cache-dir --no-binary llama-cpp-python \
  "llama-cpp-python==$VERSION" diskcache
"$VENV/bin/python" -c "import llama_cpp; print(llama_cpp.llama_print_system_info().decode())"
