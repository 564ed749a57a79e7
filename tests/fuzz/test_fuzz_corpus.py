"""The atheris targets, replayed over the seed corpus without atheris: the targets import and
run, and every seed passes (a crash found by a long run is kept as a seed once fixed)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from targets import TARGETS  # noqa: E402


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_every_seed_passes_its_target(name: str) -> None:
    seeds = sorted((HERE / "corpus" / name).iterdir())
    assert seeds, f"no seeds for {name}"
    for seed in seeds:
        TARGETS[name](seed.read_bytes())


def test_every_corpus_folder_has_a_target() -> None:
    folders = {p.name for p in (HERE / "corpus").iterdir() if p.is_dir() and not p.name.endswith("-new")}
    assert folders == set(TARGETS)
