"""Test helpers shipped with broker so plugin authors test against the same contract.

- :class:`broker.testing.memory.MemoryBackend`: a complete in-memory backend.
- :class:`broker.testing.contract.BackendContract`: the contract suite; subclass it
  in your plugin's tests and provide a ``backend`` fixture.
"""
