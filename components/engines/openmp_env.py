"""How llama.cpp's OpenMP threads wait between the steps of a token: set before libgomp loads, operator's values win.

libgomp lets a waiting thread spin `GOMP_SPINCOUNT` times (about 3 ms by default) before it sleeps, but only 100
times once the process holds more OpenMP threads than it has cores: with a second GGUF model loaded (a compare of
two quantizations, the offline model beside another), every thread then sleeps at each of the many barriers of a
token and wakes late. Measured on 2 cores (bench/bench_llama_omp.py, bench/RESULTS.md): the 2-thread server
decoding beside a second, idle server lost a quarter of its speed under libgomp's defaults and nothing with
`OMP_WAIT_POLICY=active` (which raises that throttled count to 1000 spins). `GOMP_SPINCOUNT=300000` keeps the
unthrottled wait at libgomp's own 3 ms instead of the active policy's five minutes of spinning, so an idle
server still costs no CPU.
"""

from __future__ import annotations

import os

#: libgomp reads these once, when it is loaded (the first import of xllamacpp or torch)
OPENMP_ENV = {"OMP_WAIT_POLICY": "active", "GOMP_SPINCOUNT": "300000"}


def prepare_openmp() -> bool:
    """Sets OPENMP_ENV unless the operator set either variable; True if it set them. Call before libgomp loads."""
    if any(name in os.environ for name in OPENMP_ENV):
        return False
    os.environ.update(OPENMP_ENV)
    return True


# Imported first by app.py, and by the llama.cpp engine for every other caller (bench, tests): before libgomp loads.
prepare_openmp()
