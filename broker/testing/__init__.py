"""Test helpers shipped with broker so plugin authors test against the same contract.

- :class:`broker.testing.memory.MemoryBackend`: a complete in-memory backend.
- :class:`broker.testing.contract.BackendContract`: the contract suite; subclass it
  in your plugin's tests and provide a ``backend`` fixture.
- :func:`broker.testing.context.memory_context`: a Context over in-memory backends, for
  calling broker's use cases in-process.
- :func:`broker.testing.gnupg.throwaway_gnupg_home`: a 0700 GnuPG home with a key, its
  gpg-agent stopped and the home removed on exit.
- :func:`broker.testing.local_sts.enforcing_sts`: moto's STS/IAM server on 127.0.0.1 behind
  :class:`broker.testing.local_sts.LocalSTS`, a proxy that enforces the STS rules moto skips
  (MFA codes checked against the device's seed and accepted once, trust policies' MFA
  condition, role chaining's one hour, the SigV4 clock window, ``ASIA`` temporary keys);
  the rules themselves are in :mod:`broker.testing.aws_rules`.

A plugin's own fakes live with the plugin: the 1Password SDK emulator is
:mod:`broker_onepassword.testing`.

Nothing here is imported by broker's commands: import the module you need.
"""
