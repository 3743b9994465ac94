"""Engines: one interface (base.py) over llama.cpp, transformers, TGI and OpenAI-compatible servers."""
