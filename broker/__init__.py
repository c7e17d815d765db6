"""broker: short-lived AWS credentials from keys that never touch disk in plaintext."""

__version__ = "0.1.0"
