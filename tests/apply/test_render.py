"""Rendering a launch: argv (a list), environment, health checks and systemd units, for each
backend, with hostile paths and names; user templates; template errors in one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from syrupy.assertion import SnapshotAssertion

from reconciler.apply.render import bundled_templates, render, url_host
from reconciler.apply.units import LABEL, Rendered
from reconciler.backends import BACKENDS, Managed, Modelled
from reconciler.errors import ApplyError
from reconciler.observe.processes import LABEL as OBSERVED_LABEL
from tests.apply.cases import HOSTILE, PROGRAMS, STATE, TOTALS, case

BACKEND_NAMES = ("llama.cpp", "vllm", "ollama", "command")


def rendered(backend: str, *, executor: str = "process", **kwargs: Any) -> Rendered:
    templates = kwargs.pop("templates", None)
    launch, spec = case(backend, **kwargs)
    return render(
        launch,
        spec,
        program=PROGRAMS[backend],
        executor=executor,  # type: ignore[arg-type]
        templates=templates,
        state_dir=STATE,
        gpu_total_mib=TOTALS,
    )


def view(r: Rendered) -> dict[str, Any]:
    """What a snapshot records: everything but the launch hash (tested in test_launch)."""
    return {
        "argv": list(r.argv),
        "env": {k: ("<secret>" if k in r.secret_names else v) for k, v in r.env.items()},
        "secret_names": sorted(r.secret_names),
        "health_url": r.health_url,
        "load": r.load,
        "ready_url": r.ready_url,
        "env_file": r.env_file,
        "cwd": r.cwd,
    }


@pytest.mark.parametrize("hostile", [False, True], ids=["plain", "hostile"])
@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_argv_and_environment(backend: str, hostile: bool, snapshot: SnapshotAssertion) -> None:
    r = rendered(backend, hostile=hostile)
    assert view(r) == snapshot
    assert r.argv[0] == PROGRAMS[backend]
    assert r.env[LABEL] == "chat"
    assert r.unit == "reconciler-chat"
    assert r.unit_text is None  # the process executor has no unit


@pytest.mark.parametrize("hostile", [False, True], ids=["plain", "hostile"])
@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_systemd_unit(backend: str, hostile: bool, snapshot: SnapshotAssertion) -> None:
    r = rendered(backend, hostile=hostile, executor="systemd")
    assert r.unit_text == snapshot
    lines = r.unit_text.splitlines()
    assert "Type=exec" in lines
    assert "KillMode=control-group" in lines
    assert "TimeoutStopSec=10" in lines
    assert "Restart=on-failure" in lines
    assert "WantedBy=default.target" in lines
    assert lines.index("StartLimitBurst=5") < lines.index("[Service]")
    assert sum(line.startswith("ExecStart=") for line in lines) == 1  # newlines stay escaped


def test_the_label_is_the_one_the_observer_reads() -> None:
    assert LABEL == OBSERVED_LABEL


def test_a_unit_never_holds_a_secret_value() -> None:
    for backend in BACKEND_NAMES:
        r = rendered(backend, hostile=True, executor="systemd")
        assert r.secret_names >= {"ODD_VALUE"}
        assert r.unit_text is not None
        for name in r.secret_names:
            assert r.env[name] not in r.unit_text
            assert f"{name}=" not in r.unit_text
        assert f"EnvironmentFile={STATE}/reconciler-chat.env" in r.unit_text
        assert "hf_secret_value_42" not in r.unit_text


def test_llama_cpp_flags_are_spelled_as_the_flag_table_writes_them() -> None:
    table = BACKENDS["llama.cpp"]
    r = rendered("llama.cpp", tensor_split=(0.6, 0.4), gpus=("0", "1"), swa_full=True)
    for arg in r.argv:
        entry = table.entry(arg)
        if isinstance(entry, Managed | Modelled):
            assert arg == entry.names[0] or arg in ("--no-kv-unified",), arg
    assert r.argv[r.argv.index("-ts") + 1] == "0.6,0.4"
    assert r.argv[r.argv.index("-sm") + 1] == "layer"
    assert "--swa-full" in r.argv
    assert r.argv[r.argv.index("--fit") + 1] == "off"
    assert "--metrics" in r.argv


def test_llama_cpp_memory_flags_in_extra_args_are_written_once_from_the_launch() -> None:
    r = rendered("llama.cpp", ubatch=1024, extra_args=("-ub", "1024", "--threads", "8"))
    assert r.argv.count("-ub") == 1
    assert r.argv[r.argv.index("-ub") + 1] == "1024"
    assert r.argv[-2:] == ("--threads", "8")


def test_a_cpu_launch_sees_no_gpu() -> None:
    r = rendered("llama.cpp", gpus=(), gpu_uuids=(), gpu_layers=0)
    assert r.env["CUDA_VISIBLE_DEVICES"] == ""
    assert r.env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert r.argv[r.argv.index("-ngl") + 1] == "0"


def test_mig_slices_are_named_by_their_uuids() -> None:
    uuids = ("MIG-11111111-2222-3333-4444-555555555555", "MIG-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee")
    r = rendered("llama.cpp", gpus=("0/mig1", "0/mig2"), gpu_uuids=uuids, tensor_split=(1, 1))
    assert r.env["CUDA_VISIBLE_DEVICES"] == ",".join(uuids)


def test_llama_cpp_api_key_comes_from_a_file_never_the_unit() -> None:
    launch, spec = case("llama.cpp")
    spec = spec.model_copy(update={"env": {"LLAMA_API_KEY_FILE": "/run/keys/llama"}})
    r = render(launch, spec, program="/bin/llama-server", state_dir=STATE, executor="systemd")
    assert r.argv[r.argv.index("--api-key-file") + 1] == "/run/keys/llama"
    assert "LLAMA_API_KEY_FILE" not in r.env
    assert "--api-key " not in (r.unit_text or "")


@pytest.mark.parametrize(
    ("gpus", "tensor_parallel", "want"),
    [(("0",), 1, "0.500"), (("0", "1"), 2, "0.250")],
)
def test_vllm_memory_is_the_planned_share_of_each_card(
    gpus: tuple[str, ...], tensor_parallel: int, want: str
) -> None:
    launch, spec = case("vllm", gpus=gpus, gpu_uuids=("GPU-a", "GPU-b")[: len(gpus)])
    launch = launch.model_copy(update={"tensor_parallel": tensor_parallel})
    spec = spec.model_copy(update={"vram_mib": 12282})  # 12282 MiB of 24564 on one card
    r = render(launch, spec, program="/bin/vllm", state_dir=STATE, gpu_total_mib=TOTALS)
    assert r.argv[r.argv.index("--gpu-memory-utilization") + 1] == want
    assert r.argv[r.argv.index("--tensor-parallel-size") + 1] == str(tensor_parallel)
    with pytest.raises(ApplyError, match="no total memory known for GPU 0"):
        render(launch, spec, program="/bin/vllm", state_dir=STATE)


def test_ollama_listens_where_the_model_says_and_is_loaded_for_good() -> None:
    r = rendered("ollama", host="0.0.0.0", gpu_layers=None)
    assert r.argv == (PROGRAMS["ollama"], "serve")
    assert r.env["OLLAMA_HOST"] == "0.0.0.0:11500"
    assert r.env["OLLAMA_KEEP_ALIVE"] == "-1"
    assert r.env["OLLAMA_MAX_LOADED_MODELS"] == "1"
    assert r.load == {
        "model": "llama3.1:8b",
        "prompt": "",
        "keep_alive": -1,
        "options": {"num_ctx": 8192, "num_gpu": 999},
    }
    assert r.ready_url == "http://127.0.0.1:11500/api/ps"
    default = rendered("ollama", port=None)
    assert default.env["OLLAMA_HOST"] == "127.0.0.1:11434"


@pytest.mark.parametrize(
    ("host", "want"),
    [("0.0.0.0", "127.0.0.1"), ("::", "[::1]"), ("::1", "[::1]"), ("gpu-box", "gpu-box")],
)
def test_health_urls_reach_a_wildcard_server_on_the_loopback(host: str, want: str) -> None:
    assert url_host(host) == want
    assert rendered("llama.cpp", host=host).health_url == f"http://{want}:8081/health"


def test_a_command_keeps_its_argv_and_its_health_url() -> None:
    r = rendered("command")
    assert r.argv == (
        PROGRAMS["command"],
        "--model",
        "/models/chat.gguf",
        "--listen",
        "127.0.0.1:8081",
    )
    assert r.health_url == "http://127.0.0.1:8081/ready"
    assert rendered("command", port=None).argv[0] == PROGRAMS["command"]


def test_the_bundled_templates_are_found() -> None:
    names = {
        p.relative_to(bundled_templates()).as_posix() for p in bundled_templates().rglob("*.j2")
    }
    systemd = {"systemd/reconciler.service.j2", "systemd/watch.service.j2"}
    assert names == {f"backends/{b}.j2" for b in BACKEND_NAMES} | systemd


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return folder


def test_a_user_template_overrides_ours_file_by_file(
    tmp_path: Path, snapshot: SnapshotAssertion
) -> None:
    mine = write(
        tmp_path,
        "backends/command.j2",
        '[{{ program | arg }}, "--wrapped"{% for a in args %}, {{ a | arg }}{% endfor %}]\n',
    )
    r = rendered("command", templates=mine, executor="systemd")
    assert r.argv[:2] == (PROGRAMS["command"], "--wrapped")
    assert r.unit_text == snapshot  # the unit template is still ours
    assert rendered("llama.cpp", templates=mine).argv == rendered("llama.cpp").argv


def one_line_error(excinfo: pytest.ExceptionInfo[ApplyError]) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    assert excinfo.value.__cause__ is None
    assert excinfo.value.__context__ is None or excinfo.value.__suppress_context__
    return message


def test_an_unknown_variable_names_the_template_file_line_and_variable(tmp_path: Path) -> None:
    mine = write(
        tmp_path, "backends/llama.cpp.j2", "[{{ program | arg }}\n, {{ launch.ctx_size | arg }}]\n"
    )
    with pytest.raises(ApplyError) as excinfo:
        rendered("llama.cpp", templates=mine)
    message = one_line_error(excinfo)
    assert message.startswith(f"{mine / 'backends' / 'llama.cpp.j2'}:2: ")
    assert "ctx_size" in message
    assert "this template gets: api_key_file, args, extra_args" in message

    write(tmp_path, "backends/llama.cpp.j2", "[{{ program | arg }}, {{ nonsense }}]\n")
    with pytest.raises(ApplyError, match=r"llama.cpp.j2:1: 'nonsense' is undefined"):
        rendered("llama.cpp", templates=mine)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{{ program | arg }} --flag\n", r"/backends/vllm.j2: its output is no JSON array"),
        ('{"argv": []}\n', "renders dict, not a non-empty JSON array"),
        ("[{{ program | arg }}, 8, null]\n", r"argument 2 is None, not a string; use `\| arg`"),
        ("[{{ program | arg }}, {{ launch.gguf | arg }}]\n", r"vllm.j2:1: `arg` takes a string"),
        ("[{% if %}]\n", r"vllm.j2:1: Expected an expression, got 'end of statement block'"),
    ],
)
def test_a_broken_template_is_one_line_naming_it(tmp_path: Path, text: str, expected: str) -> None:
    mine = write(tmp_path, "backends/vllm.j2", text)
    with pytest.raises(ApplyError, match=expected) as excinfo:
        rendered("vllm", templates=mine)
    one_line_error(excinfo)


def test_a_missing_templates_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(ApplyError, match=r"templates folder .*/nowhere does not exist"):
        rendered("vllm", templates=tmp_path / "nowhere")


def test_a_unit_refuses_a_program_systemd_would_refuse() -> None:
    launch, spec = case("llama.cpp")
    for bad in ('/opt/my "llama"/llama-server', "/opt/$x/llama-server", "/opt/a\nb/llama-server"):
        render(launch, spec, program=bad, state_dir=STATE)  # fine for the process executor
        with pytest.raises(ApplyError, match=r"reconciler.service.j2:\d+: the program .* holds"):
            render(launch, spec, program=bad, state_dir=STATE, executor="systemd")
    with pytest.raises(ApplyError, match=r"the path .* holds a control character"):
        render(launch, spec, program="/bin/x", state_dir=Path("/a\nb"), executor="systemd")


def test_hostile_values_stay_one_argument_each() -> None:
    r = rendered("llama.cpp", hostile=True)
    assert r.argv[r.argv.index("-m") + 1] == f"/models/{HOSTILE}.gguf"
    assert r.argv[-2:] == ("--alias", HOSTILE)
    r = rendered("command", hostile=True)
    assert r.argv[2] == f"/models/{HOSTILE}.gguf"
