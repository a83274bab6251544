"""`reconcile fit MODEL.gguf` as a user runs it: the real Gemma 3 270M and generated GGUFs,
against profiles and snapshots, beside what runs and beside a desired file's plan."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, get_args

import pytest

from reconciler.cli import main
from reconciler.commands import fit
from reconciler.config.types import CacheType
from reconciler.pipeline import Pipeline
from reconciler.plan import whatif
from reconciler.state import GpuProcess, ObservedState
from tests.ggufs import Shape, write_gguf
from tests.plan.simulate import carry_out

ROOT = Path(__file__).resolve().parents[2]
WORKSTATION = str(ROOT / "desired" / "workstation.yaml")
# 16 layers, 1.6 GiB in F16, trained on 128k tokens
LONG = Shape(
    "long", n_layer=16, n_embd=2048, n_head=16, n_head_kv=4, n_ff=5632, n_vocab=32000,
    ctx_train=131072,
)  # fmt: skip


@pytest.fixture(scope="module")
def long_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_gguf(tmp_path_factory.mktemp("fit") / "long.gguf", LONG, sparse=True)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["fit", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def answer(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    code, out, err = run([*argv, "--json"], capsys)
    assert err == ""
    return code, json.loads(out)


def snapshot(tmp_path: Path, profile: str, capsys: pytest.CaptureFixture[str]) -> ObservedState:
    """What `reconcile status --profile X --json` writes, read back."""
    assert main(["status", "--profile", profile, "--json"]) == 0
    return ObservedState.model_validate_json(capsys.readouterr().out)


def test_constants_restated_for_a_light_parser_match_their_sources() -> None:
    assert get_args(CacheType) == fit.CACHE_TYPES
    assert fit.DEFAULT_CACHE_TYPES == whatif.DEFAULT_CACHE_TYPES


def test_gemma_on_a_profile(gemma_gguf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run([str(gemma_gguf), "--profile", "rtx4090"], capsys)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == (
        f"{gemma_gguf}: gemma3, 18 layers, trained context 32768, 241 MiB file; parallel 1, "
        "flash attention auto"
    )
    assert lines[1] == "Against profile:rtx4090, beside what runs:"
    assert lines[2] == (
        "  GPU 0 NVIDIA GeForce RTX 4090: 21508 MiB free of its 21508 MiB budget (other "
        "programs: gnome-shell (pid 1000000, 420 MiB), firefox (pid 1000001, 180 MiB))"
    )
    assert lines[5].split() == [
        "GPUs",
        "cache",
        "largest",
        "ctx,",
        "every",
        "layer",
        "at",
        "ctx",
        "4096",
    ]
    # a 270M model: every cache type reaches the trained context on a 24 GB card
    assert [line.split()[2:5] for line in lines[6:9]] == [
        ["f16", "32768", "(trained)"],
        ["q8_0", "32768", "(trained)"],
        ["q4_0", "32768", "(trained)"],
    ]
    assert lines[-1].startswith("Fits at ctx 4096 with an f16 cache on GPU 0 (")


@pytest.mark.parametrize(("ctx", "cache"), [(4096, "f16"), (8192, "q8_0"), (32768, "q4_0")])
def test_figures_are_those_of_reconcile_estimate(
    gemma_gguf: Path, ctx: int, cache: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["estimate", str(gemma_gguf), "--ctx", str(ctx), "--cache-type", cache, "--json"]) == 0
    )
    devices = {d["name"]: d for d in json.loads(capsys.readouterr().out)["devices"]}
    argv = [str(gemma_gguf), "--profile", "rtx4090", "--ctx", str(ctx), "--cache-type", cache]
    code, data = answer(argv, capsys)
    (option,) = data["options"]
    # MiB rounded up, as the planner rounds the estimator's bytes
    assert option["at_ctx"]["need_mib"] == {
        "0": math.ceil(devices["cuda0"]["total_mib"]),
        "host": math.ceil(devices["host"]["total_mib"]),
    }
    assert data["verdict"]["need_mib"] == option["at_ctx"]["need_mib"]
    assert code == 0


def test_json_shape_scripts_rely_on(gemma_gguf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, data = answer([str(gemma_gguf), "--profile", "2x3090"], capsys)
    assert code == 0
    assert set(data) == {
        "format_version", "file", "model", "asked", "source", "snapshot",
        "ctx_searched_up_to", "gpus", "host_free_mib", "options", "verdict", "notes",
    }  # fmt: skip
    assert data["format_version"] == 1
    assert (data["source"], data["snapshot"]) == ("profile:2x3090", None)
    assert data["model"] == {
        "architecture": "gemma3",
        "layers": 18,
        "trained_ctx": 32768,
        "file_mib": data["model"]["file_mib"],
    }
    assert data["asked"] == {
        "ctx": 4096,
        "parallel": 1,
        "flash_attn": "auto",
        "cache_types": ["f16", "q8_0", "q4_0"],
        "priority": 0,
        "with": None,
    }
    assert [g["label"] for g in data["gpus"]] == ["0", "1"]
    assert set(data["gpus"][0]) == {
        "label", "name", "budget_mib", "free_mib", "after_giving_way_mib", "takes_new_starts",
        "note",
    }  # fmt: skip
    # per cache type: GPU 0, GPU 1, then the split over both
    assert [(o["gpus"], o["cache_type"]) for o in data["options"]] == [
        (gpus, cache) for cache in ("f16", "q8_0", "q4_0") for gpus in (["0"], ["1"], ["0", "1"])
    ]
    option = data["options"][2]
    assert set(option) == {
        "gpus", "tensor_split", "cache_type", "max_ctx", "max_ctx_giving_way", "at_ctx",
    }  # fmt: skip
    assert set(option["at_ctx"]) == {
        "status", "need_mib", "displaces", "gpu_layers", "partial_mib",
    }  # fmt: skip
    assert sum(option["tensor_split"]) == pytest.approx(1.0)
    assert data["verdict"] == {
        "fits": True,
        "status": "fits",
        "cache_type": "f16",
        "gpus": ["0", "1"],
        "gpu_layers": "all",
        "need_mib": data["options"][0]["at_ctx"]["need_mib"],
        "reason": "",
        "planned": False,
        "split": False,
        "displaced": [],
    }


def test_a_game_on_the_card_leaves_room_for_part_of_the_layers(
    long_gguf: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    idle = snapshot(tmp_path, "rtx4090", capsys)
    gpu = idle.gpus[0].with_process(
        GpuProcess(pid=4242, used_mib=20500, kind="graphics", name="game")
    )
    path = tmp_path / "busy.json"
    path.write_text(idle.model_copy(update={"gpus": (gpu,)}).to_json())
    code, out, _err = run([str(long_gguf), "--observed", str(path), "--cache-type", "f16"], capsys)
    assert code == fit.NO_FIT
    lines = out.splitlines()
    assert lines[2].startswith("  GPU 0 NVIDIA GeForce RTX 4090: 1008 MiB free of its 1008 MiB")
    assert "(other programs: game (pid 4242, 20500 MiB), gnome-shell" in lines[2]
    assert lines[-1].startswith(
        "Does not fit with every layer on a GPU at ctx 4096; with gpu_layers: "
    )
    # the same file on the idle profile fits, up to a context that the game's memory cost
    assert run([str(long_gguf), "--profile", "rtx4090"], capsys)[0] == 0


def test_room_beside_running_instances_is_what_their_plan_left(
    long_gguf: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's example carried out on a simulated RTX 4090: what `fit` finds free is
    the budget less what the plan placed (each instance charged its estimate)."""
    observed = snapshot(tmp_path, "rtx4090", capsys)
    pipeline = Pipeline()
    plan = pipeline.plan(pipeline.load(WORKSTATION), observed)
    path = tmp_path / "running.json"
    path.write_text(carry_out(plan, observed).to_json())
    _code, data = answer([str(long_gguf), "--observed", str(path)], capsys)
    assert (data["source"], data["snapshot"]) == ("profile:rtx4090", str(path))
    (gpu,) = data["gpus"]
    (line,) = plan.gpus
    # the instances' budget is the desired file's; fit's is the default policy's
    assert gpu["budget_mib"] - gpu["free_mib"] == line.planned_mib


def test_with_a_desired_file_names_what_gives_way(
    long_gguf: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [str(long_gguf), "--profile", "rtx4090", "--with", WORKSTATION, "--ctx", "131072"]
    argv += ["--cache-type", "f16"]
    low_code, low = answer([*argv, "--priority", "10"], capsys)
    assert (low_code, low["verdict"]["fits"], low["verdict"]["displaced"]) == (3, False, [])
    code, data = answer([*argv, "--priority", "60"], capsys)
    assert code == 0
    verdict = data["verdict"]
    assert (verdict["status"], verdict["planned"], verdict["gpus"]) == ("displacing", True, ["0"])
    assert [(d["model"], d["priority"]) for d in verdict["displaced"]] == [("coder", 50)]
    assert verdict["displaced"][0]["before"] == "start on GPU 0"
    # the human answer says the same
    code, out, _err = run([*argv, "--priority", "60"], capsys)
    lines = out.splitlines()
    assert lines[1] == f"Against profile:rtx4090, beside the plan of {WORKSTATION} (priority 60):"
    assert lines[-2] == "It would displace:"
    assert lines[-1].startswith("  coder (priority 50): start on GPU 0 -> ")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--ctx", "0"], "reconcile fit: argument --ctx: must be a whole number from 1 to "
         "999999999, not '0'; see `reconcile fit --help`"),
        (["--parallel", "two"], "reconcile fit: argument --parallel: must be a whole number "
         "from 1 to 999999999, not 'two'; see `reconcile fit --help`"),
        (["--priority", "high", "--with", WORKSTATION], "reconcile fit: argument --priority: "
         "must be a whole number (a model's priority), not 'high'; see `reconcile fit --help`"),
        (["--priority", "5"], "reconcile fit: --priority ranks the model among a desired "
         "file's models; give --with FILE too"),
        (["--flash-attn", "off", "--cache-type", "q8_0"], "reconcile fit: --cache-type q8_0 "
         "quantizes the V cache, which llama.cpp allows only with flash attention; use "
         "--flash-attn on (or auto), or --cache-type f16"),
        (["--profile", "rtx4090", "--observed", "x.json"], "reconcile fit: argument "
         "--observed: not allowed with argument --profile; see `reconcile fit --help`"),
    ],
)  # fmt: skip
def test_bad_options_give_one_line_and_exit_1(
    gemma_gguf: Path, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run([str(gemma_gguf), *argv], capsys) == (1, "", message + "\n")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file; check the path"),
        (b"", "is empty (0 bytes); download it again"),
        (b"\x89PNG\r\n" + b"\0" * 64, "not a GGUF file (no GGUF magic at the start)"),
    ],
)
def test_bad_files_give_one_line_and_exit_1(
    tmp_path: Path, content: bytes | None, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "m.gguf"
    if content is not None:
        path.write_bytes(content)
    assert run([str(path), "--profile", "rtx4090"], capsys) == (1, "", f"{path}: {message}\n")


def test_flash_attention_off_asks_only_about_an_f16_cache(
    gemma_gguf: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _code, data = answer([str(gemma_gguf), "--profile", "rtx4090", "--flash-attn", "off"], capsys)
    assert data["asked"]["cache_types"] == ["f16"]
    assert [o["cache_type"] for o in data["options"]] == ["f16"]


def test_a_machine_without_gpu_does_not_fit(
    gemma_gguf: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _err = run([str(gemma_gguf), "--profile", "cpu-only"], capsys)
    assert code == fit.NO_FIT
    assert out.splitlines()[-1] == (
        "Does not fit at ctx 4096: no GPU may take it (no NVIDIA GPU in profile cpu-only)."
    )


def test_a_snapshot_is_named_with_what_it_was_taken_from(
    long_gguf: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    observed = snapshot(tmp_path, "rtx4090", capsys)
    path = tmp_path / "now.json"
    path.write_text(observed.model_copy(update={"observed_at": "2026-11-24T12:00:00Z"}).to_json())
    _code, out, _err = run([str(long_gguf), "--observed", str(path)], capsys)
    assert out.splitlines()[1] == (
        f"Against snapshot {path} (observed 2026-11-24T12:00:00Z; taken from profile:rtx4090), "
        "beside what runs:"
    )


@pytest.mark.parametrize(
    ("file", "taken", "name"),
    [
        ("Qwen3-8B.Q4_K_M.gguf", set(), "qwen3-8b-q4-k-m"),
        ("chat.gguf", {"chat"}, "chat-fit"),
        ("chat.gguf", {"chat", "chat-fit"}, "chat-fit2"),
        ("chat.gguf", {"chat", "chat-fit", "chat-fit2"}, "chat-fit3"),
        ("a" * 60 + ".gguf", {"a" * 40, "a" * 40 + "-fit"}, "a" * 40 + "-fit2"),
        ("---.gguf", {"model"}, "model-fit"),
    ],
)
def test_the_candidate_is_named_unlike_the_desired_files_models(
    file: str, taken: set[str], name: str
) -> None:
    assert fit._name(Path(file), taken) == name
    assert len(name) <= fit.MAX_NAME


def test_a_name_is_found_however_many_are_taken() -> None:
    long = "a" * 40
    taken = {long, f"{long}-fit", *(f"{long}-fit{n}" for n in range(2, 300))}
    assert fit._name(Path(f"{long}.gguf"), taken) == f"{long}-fit300"


def test_a_ctx_beyond_the_trained_one_is_said_in_the_verdict(
    gemma_gguf: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run([str(gemma_gguf), "--profile", "rtx4090", "--ctx", "65536"], capsys)
    assert (code, err) == (0, "")
    assert out.splitlines()[-1].startswith(
        "Fits at ctx 65536 (beyond the trained context 32768) with an f16 cache on GPU 0 ("
    )
    assert "  note: ctx 65536 is above the model's trained context 32768" in out.splitlines()
