"""Readers for credentials kept by other tools (aws-vault, ~/.aws/credentials).

They only read, and delete when asked; deciding what to import, writing to
broker's backends and verifying is the job of :mod:`broker.services.importers`.
"""
