"""Features built on the core, without Gradio: comparison and ratings, retrieval (RAG), JSON output, batch runs."""
