"""The vocabulary every layer speaks: catalog, prompt formats, messages, request and event types."""
