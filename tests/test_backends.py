"""The table of flags per backend: well formed, and read the way llama-server reads a command."""

from __future__ import annotations

from typing import get_args

import pytest

from reconciler.backends import BACKENDS, FlagUse, Managed, Modelled, flag_uses, memory_settings
from reconciler.config.desired import BackendName, ModelSpec
from reconciler.estimate.flags import config_from_flags, llama_server_flags
from reconciler.estimate.memory import RunConfig


def test_there_is_a_table_for_every_backend_a_desired_file_may_name() -> None:
    assert set(BACKENDS) == set(get_args(BackendName))


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_each_spelling_appears_once_and_names_real_keys_and_fields(name: str) -> None:
    table = BACKENDS[name]
    spellings = [s for e in table.entries for s in e.names]
    assert len(spellings) == len(set(spellings))
    for entry in table.entries:
        if isinstance(entry, Managed) and entry.key:
            assert entry.key in ModelSpec.model_fields
        if isinstance(entry, Managed | Modelled) and entry.field:
            assert entry.field in RunConfig.model_fields


def test_both_spellings_of_a_value_are_read() -> None:
    uses = list(flag_uses("llama.cpp", ["--threads", "8", "-ub", "1024", "--batch-size=4096"]))
    ub, b = BACKENDS["llama.cpp"].entry("-ub"), BACKENDS["llama.cpp"].entry("-b")
    assert ub is not None
    assert b is not None
    assert uses == [
        FlagUse(2, "-ub", ub, "1024", 3),
        FlagUse(4, "--batch-size", b, "4096", 4, inline=True),
    ]


def test_a_modelled_value_is_not_read_as_a_flag() -> None:
    # A value is skipped; an unknown flag's value is looked at (it is not known to take one).
    assert [u.flag for u in flag_uses("llama.cpp", ["-b", "-c", "--alias", "-c"])] == ["-b", "-c"]


def test_memory_settings_last_flag_wins_and_bad_values_are_left_out() -> None:
    args = ["-kvu", "-ub", "256", "--no-kv-unified", "--swa-full", "-b", "many", "--threads", "8"]
    assert memory_settings(args) == {"kv_unified": False, "ubatch": 256, "swa_full": True}
    assert memory_settings(["--ubatch-size=2048", "--kv-unified"]) == {
        "ubatch": 2048,
        "kv_unified": True,
    }
    assert memory_settings(["--embeddings", "--pooling", "mean"]) == {}


def test_the_estimators_flags_use_the_tables_spellings() -> None:
    cfg = RunConfig(ctx=8192, parallel=2, kv_unified=True, ubatch=1024, swa_full=True)
    words = llama_server_flags(cfg)
    table = BACKENDS["llama.cpp"]
    flags = [w for w in words if w.startswith("-")]
    assert all(table.entry(f) is not None for f in flags)
    assert words[words.index("-ub") + 1] == "1024"
    assert "--kv-unified" in words
    assert words[-1] == "--swa-full"
    assert config_from_flags(words) == cfg


def test_config_from_flags_reads_every_spelling() -> None:
    long = ["--ctx-size", "8192", "--ubatch-size=256", "--batch-size", "1024", "-kvu"]
    assert config_from_flags(long) == RunConfig(ctx=8192, ubatch=256, batch=1024, kv_unified=True)
