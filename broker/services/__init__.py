"""Use cases: plain functions over config, registry, backends and AWS pieces.

No click and no printing here: the CLI formats what these return.
"""
