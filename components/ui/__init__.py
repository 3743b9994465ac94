"""The Gradio page: one module per tab plus shared pickers and settings; never knows the engine."""
