"""Registry: duplicates and unknown names are refused with messages that list what is valid."""

from __future__ import annotations

import pytest

import paxion
import paxion.engine.optim  # noqa: F401  (registers the lr schedules)
from paxion.registry import KINDS, Registry, RegistryError, registry


def test_register_and_get_roundtrip() -> None:
    reg = Registry()

    @reg.register("fuser", "my_fuser")
    class MyFuser:
        pass

    assert reg.get("fuser", "my_fuser") is MyFuser
    assert ("fuser", "my_fuser") in reg
    assert ("fuser", "other") not in reg
    assert reg.names("fuser") == ["my_fuser"]


def test_duplicate_name_raises_naming_both() -> None:
    reg = Registry()
    reg.add("task", "dup", object())
    with pytest.raises(RegistryError, match="task 'dup' is already registered"):
        reg.add("task", "dup", object())


def test_unknown_name_lists_valid_names() -> None:
    reg = Registry()
    reg.add("backbone", "alpha", object())
    reg.add("backbone", "beta", object())
    with pytest.raises(RegistryError) as info:
        reg.get("backbone", "gamma")
    message = str(info.value)
    assert "unknown backbone 'gamma'" in message
    assert "['alpha', 'beta']" in message


def test_unknown_kind_lists_kinds() -> None:
    with pytest.raises(RegistryError, match="unknown registry kind 'widget'") as info:
        Registry().get("widget", "x")
    assert "lr_schedule" in str(info.value)


def test_import_registers_core_components() -> None:
    assert paxion.registry is registry
    assert set(KINDS) >= {"backbone", "task", "model", "dataset", "lr_schedule"}
    assert "toy" in registry.names("task")
    assert "toy_regressor" in registry.names("model")
    assert "toy_regression" in registry.names("dataset")
    assert {"epoch_cosine", "warmup_cosine"} <= set(registry.names("lr_schedule"))
