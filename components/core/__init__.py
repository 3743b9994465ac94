"""The core every request goes through: catalog, prompt formats, validation, messages, the service."""
