"""A reference side for bench_llama.py: llama.cpp compiled for this CPU (llama-cpp-python built from its sdist).

Run by the benchmark with a Python that has `llama_cpp` (bench/build_native_llama.sh makes one in
bench/out/native-venv; never a product dependency): `python bench/native_llama.py MODEL THREADS [FLASH 1|0]`,
then one JSON request per line on stdin ({"prompt", "max_tokens", "temperature", "top_p", "top_k", "repeat_penalty",
"repeat_last_n", "stop"}), one JSON answer per line on stdout ({"ttft_s", "tokens", "decode_tps", "total_s"}).
The prompt is tokenized with special tokens parsed, as the engine's /tokenize call does, and decoded with the same
sampling fields the engine sends to llama-server.
"""

from __future__ import annotations

import json
import os
import sys
import time


def main() -> None:
    import llama_cpp

    path, threads = sys.argv[1], int(sys.argv[2])
    flash_attn = len(sys.argv) < 4 or sys.argv[3] != "0"
    llm = llama_cpp.Llama(
        model_path=path,
        n_ctx=2048,
        n_threads=threads,
        n_threads_batch=os.cpu_count() or 1,
        flash_attn=flash_attn,
        verbose=False,
    )
    print(json.dumps({"ready": True, "system_info": llama_cpp.llama_print_system_info().decode()}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        ids = llm.tokenize(req["prompt"].encode(), add_bos=True, special=True)
        llm.reset()  # no prompt cache across runs: each run processes the prompt, as a new request would
        times: list[float] = []
        start = time.perf_counter()
        for chunk in llm.create_completion(
            ids,
            max_tokens=req["max_tokens"],
            temperature=req["temperature"],
            top_p=req["top_p"],
            top_k=req["top_k"],
            min_p=0.0,
            repeat_penalty=req["repeat_penalty"],
            stop=req["stop"] or None,
            stream=True,
        ):
            if chunk["choices"][0].get("text"):
                times.append(time.perf_counter())
        end = time.perf_counter()
        first, last = (times[0], times[-1]) if times else (None, None)
        decode = (len(times) - 1) / (last - first) if first and last and last > first and len(times) > 1 else None
        out = {"ttft_s": (first or end) - start, "tokens": len(times), "decode_tps": decode, "total_s": end - start}
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
