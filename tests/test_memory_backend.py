import pytest

from broker.testing.contract import BackendContract
from broker.testing.memory import MemoryBackend


class TestMemoryBackend(BackendContract):
    @pytest.fixture
    def backend(self):
        MemoryBackend.reset()
        yield MemoryBackend(settings={"store": "contract"})
        MemoryBackend.reset()

    @pytest.fixture
    def reopen(self):
        return lambda b: MemoryBackend(settings=b.settings, namespace=b.namespace)


def test_namespaces_are_separate():
    MemoryBackend.reset()
    creds = MemoryBackend(settings={"store": "ns"})
    sessions = MemoryBackend(settings={"store": "ns"}, namespace="sessions")
    from broker.testing.contract import SAMPLE

    creds.set("dev", SAMPLE)
    assert sessions.get("dev") is None
