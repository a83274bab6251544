"""The search's building blocks: interchangeable GPUs, and dominated models."""

from __future__ import annotations

from reconciler.plan.options import Option
from reconciler.plan.search import Item, dominated, twin_classes


def _on(name: str, *gpus: int, mib: int = 1000) -> list[Option]:
    return [Option(name, (g,), (mib,), 0) for g in gpus]


def test_identical_gpus_that_every_model_may_use_are_one_class() -> None:
    items = [Item("a", tuple(_on("a", 0, 1, 2))), Item("b", tuple(_on("b", 0, 1, 2, mib=500)))]
    assert twin_classes(items, [8000, 8000, 8000]) == (0, 0, 0)


def test_a_pin_or_a_different_budget_separates_gpus() -> None:
    items = [Item("a", tuple(_on("a", 0, 1, 2))), Item("b", tuple(_on("b", 1)))]
    assert twin_classes(items, [8000, 8000, 8000]) == (0, 1, 0)
    assert twin_classes(items[:1], [8000, 8000, 6000]) == (0, 0, 2)


def test_a_split_keeps_twins_only_when_its_mirror_is_an_option_too() -> None:
    single = _on("a", 0, 1)
    even = Option("a", (0, 1), (600, 600), 0, rank=1)
    uneven = Option("a", (0, 1), (400, 800), 0, rank=1)
    mirror = Option("a", (0, 1), (800, 400), 0, rank=1)
    assert twin_classes([Item("a", (*single, even))], [8000, 8000]) == (0, 0)
    assert twin_classes([Item("a", (*single, uneven))], [8000, 8000]) == (0, 1)
    assert twin_classes([Item("a", (*single, uneven, mirror))], [8000, 8000]) == (0, 0)


def test_a_model_needing_at_least_as_much_everywhere_is_dominated() -> None:
    failed = Item("f", tuple(_on("f", 0, 1, mib=5000)))
    assert dominated(Item("g", tuple(_on("g", 0, 1, mib=6000))), failed)
    assert not dominated(Item("h", tuple(_on("h", 0, 1, mib=4000))), failed)
    assert not dominated(Item("i", tuple(_on("i", 0, 2, mib=6000))), failed)  # GPU 2: no proof
