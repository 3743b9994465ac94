"""Logging: JSON records, redaction, the conversation log, native output captured as records."""
