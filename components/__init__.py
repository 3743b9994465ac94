"""The playground's parts: catalog, prompts, validation, service, engines, UI, API."""
