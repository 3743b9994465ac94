"""Tiny random-weight causal LMs and a tokenizer trained on the spot, for engine tests without downloads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: German text the test tokenizer learns its merges from (umlauts and ß on purpose).
GERMAN_SENTENCES: tuple[str, ...] = (
    "Ein Buch hat 500 Seiten. Jede Seite enthält 300 Wörter.",
    "Wie viele Wörter sind im gesamten Buch enthalten?",
    "Die Hauptstadt von Deutschland ist Berlin, die größte Stadt des Landes.",
    "Nenne drei Tipps für einen guten Schlaf: früh ins Bett, kein Kaffee, frische Luft.",
    "Du bist ein hilfreicher Assistent. Bitte antworte immer auf Deutsch.",
    "Schreibe eine Produktbeschreibung für eine LED-Schreibtischlampe mit drei Helligkeitsstufen.",
    "Über den Wolken muss die Freiheit wohl grenzenlos sein.",
    "Grüße aus München, Köln und Düsseldorf! Straße, Fußgänger, Größe, Maß.",
    "Erläutere die Grundprinzipien der evolutionären Biologie und Genetik.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
)

BOS = "<s>"
EOS = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS: tuple[str, ...] = (BOS, EOS, IM_START, IM_END)


def chatml(system: str, user: str) -> str:
    """The ChatML prompt the playground sends (same text as components.vocabulary.prompts' chatml format)."""
    return f"{IM_START}system\n{system}{IM_END}\n{IM_START}user\n{user}{IM_END}\n{IM_START}assistant\n"


def save_tokenizer(directory: Path, vocab_size: int = 400) -> Any:
    """Trains a byte-level BPE tokenizer with ChatML specials and a BOS on every encode; saves it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE())
    # Byte level: every UTF-8 byte is a token, so umlauts can be split across tokens (the streamer must cope).
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    raw.train_from_iterator(list(GERMAN_SENTENCES) * 4, trainer=trainer)
    bos_id = raw.token_to_id(BOS)
    # Prepend BOS like Llama tokenizers do, so prompt counts include it.
    raw.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", special_tokens=[(BOS, bos_id)])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=EOS,
        additional_special_tokens=[IM_START, IM_END],
    )
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(directory)
    return tokenizer


def build_tiny_llama(
    directory: Path,
    hidden_size: int = 64,
    layers: int = 2,
    heads: int = 4,
    intermediate_size: int = 128,
    max_positions: int = 512,
    vocab_size: int = 400,
    seed: int = 0,
    eos_token: str = IM_END,
    readable: bool = True,
) -> Path:
    """A random-weight Llama with a freshly trained tokenizer in `directory` (loadable by from_pretrained)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = save_tokenizer(directory, vocab_size=vocab_size)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=max(1, heads // 2),
        max_position_embeddings=max_positions,
        bos_token_id=tokenizer.convert_tokens_to_ids(BOS),
        eos_token_id=tokenizer.convert_tokens_to_ids(eos_token),
        pad_token_id=tokenizer.convert_tokens_to_ids(EOS),
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    if readable:
        make_readable(model, tokenizer)
    model.generation_config.eos_token_id = config.eos_token_id
    model.generation_config.pad_token_id = config.pad_token_id
    model.save_pretrained(directory)
    return directory


def readable_ids(tokenizer: Any) -> list[int]:
    """Token ids that decode on their own to printable text (no lone UTF-8 bytes, no special tokens)."""
    special = set(tokenizer.all_special_ids)
    good = []
    for token_id in range(len(tokenizer)):
        if token_id in special:
            continue
        text = tokenizer.decode([token_id])
        if text.strip() and "\ufffd" not in text and text.replace(" ", "").isprintable():
            good.append(token_id)
    return good


def make_readable(model: Any, tokenizer: Any) -> None:
    """Zeroes the output rows of unreadable tokens and scales up the rest: greedy decoding of the random
    model then picks a readable token (some logit is almost surely > 0) and never EOS, so tests choose
    when an answer ends."""
    import torch

    good = readable_ids(tokenizer)
    with torch.no_grad():
        weight = model.lm_head.weight
        mask = torch.zeros(weight.shape[0], dtype=torch.bool, device=weight.device)
        mask[good] = True
        weight[~mask] = 0.0
        weight[mask] *= 20.0


def tiny_model_ref(directory: Path, context_length: int = 512, params_b: float = 0.0001, model_id: str = "tiny") -> Any:
    """A ModelRef for a local fp32 build in `directory` (the catalog accepts absolute paths as `repo`)."""
    return local_model_ref(str(directory), context_length=context_length, params_b=params_b, model_id=model_id)


def local_model_ref(
    repo: str,
    file: str | None = None,
    context_length: int = 512,
    params_b: float = 0.0001,
    model_id: str = "tiny",
    kind: str = "fp32",
    size_gb: float | None = None,
) -> Any:
    """A ModelRef built from catalog objects, as models.yaml would describe a local transformers build."""
    from components.vocabulary.catalog import Family, Localized, ModelRef, Quantization, QuantKind, Variant

    quant = Quantization(id=kind, kind=QuantKind(kind), repo=repo, file=file, size_gb=size_gb)
    variant = Variant(
        id=model_id, name=f"Tiny {model_id}", params_b=params_b, context_length=context_length, quantizations=[quant]
    )
    family = Family(
        id="tiny",
        name="Tiny",
        prompt_format="chatml",
        description=Localized(de="Testmodell", en="test model"),
        variants=[variant],
    )
    return ModelRef(family, variant, quant)
