"""The hub rig's fixtures (tests/unit/test_hub.py) for every unit test module."""

from tests.unit.test_hub import make_rig, rig

__all__ = ["make_rig", "rig"]
