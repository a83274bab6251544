"""The systemd executor: the commands it runs (through a fake runner: no user manager here),
`systemctl show` parsed from real output, the files it writes, and every rendered unit
checked by systemd itself (`systemd-analyze verify`)."""

from __future__ import annotations

import shutil
import stat
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from reconciler.apply.render import render
from reconciler.apply.systemd import (
    SHOW_PROPERTIES,
    Completed,
    SystemdExecutor,
    UnitState,
    parse_show,
    unit_folder,
)
from reconciler.apply.units import Rendered
from reconciler.errors import ApplyError
from tests.apply.cases import HOSTILE, STATE, TOTALS, case

SYSTEMD_ANALYZE = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"
BACKENDS = ("llama.cpp", "vllm", "ollama", "command")

# `systemctl --user show -p LoadState,ActiveState,... reconciler-chat.service` (systemd 252).
RUNNING = """\
MainPID=48213
ExecMainStartTimestampMonotonic=918273645123
ExecMainStatus=0
Result=success
NRestarts=0
LoadState=loaded
ActiveState=active
SubState=running
"""
FAILED = """\
MainPID=0
ExecMainStartTimestampMonotonic=918273645123
ExecMainStatus=1
Result=exit-code
NRestarts=5
LoadState=loaded
ActiveState=failed
SubState=failed
"""
NOT_FOUND = """\
MainPID=0
ExecMainStartTimestampMonotonic=0
ExecMainStatus=0
Result=success
NRestarts=0
LoadState=not-found
ActiveState=inactive
SubState=dead
"""
RESTARTING = FAILED.replace("ActiveState=failed", "ActiveState=activating").replace(
    "SubState=failed", "SubState=auto-restart"
)
STARTING = NOT_FOUND.replace("LoadState=not-found", "LoadState=loaded").replace(
    "ActiveState=inactive", "ActiveState=activating"
)
INACTIVE = NOT_FOUND.replace("LoadState=not-found", "LoadState=loaded")


def test_show_output_is_parsed() -> None:
    assert parse_show(RUNNING, "reconciler-chat") == UnitState(
        unit="reconciler-chat",
        load_state="loaded",
        active_state="active",
        sub_state="running",
        main_pid=48213,
        start_monotonic_us=918273645123,
        exit_status=0,
        result="success",
        restarts=0,
    )
    assert parse_show(RUNNING, "u").running
    failed = parse_show(FAILED, "u")
    assert (failed.running, failed.active_state, failed.result, failed.exit_status) == (
        False,
        "failed",
        "exit-code",
        1,
    )
    assert failed.restarts == 5
    gone = parse_show(NOT_FOUND, "u")
    assert not gone.loaded
    assert not gone.running
    assert parse_show("", "u") == UnitState(unit="u")  # nothing said: nothing runs
    assert parse_show("MainPID=[not set]\nWeird\n", "u").main_pid == 0


class FakeSystemctl:
    """Records each argv; `show` answers the next of `states` (the last one repeats)."""

    def __init__(self, *states: str, fail: dict[str, Completed] | None = None) -> None:
        self.calls: list[list[str]] = []
        self.states = list(states) or [NOT_FOUND]
        self.fail = fail or {}

    def __call__(self, argv: Sequence[str]) -> Completed:
        self.calls.append(list(argv))
        verb = next(a for a in argv[1:] if not a.startswith("--"))
        if verb in self.fail:
            return self.fail[verb]
        if verb == "show":
            text = self.states.pop(0) if len(self.states) > 1 else self.states[0]
            return Completed(0, text)
        return Completed(0)

    def verbs(self) -> list[str]:
        return [next(a for a in c[1:] if not a.startswith("--")) for c in self.calls]


def executor(tmp_path: Path, fake: FakeSystemctl, **kw: object) -> SystemdExecutor:
    return SystemdExecutor(
        unit_dir=tmp_path / "units",
        runner=fake,
        start_time=lambda pid: 1700000000.25 if pid == 48213 else None,
        sleep=lambda s: None,
        **kw,  # type: ignore[arg-type]
    )


def systemd_rendered(backend: str = "vllm", state_dir: Path = STATE, **kw: object) -> Rendered:
    launch, spec = case(backend, **kw)  # type: ignore[arg-type]
    return render(
        launch,
        spec,
        program="/opt/bin/" + launch.program,
        executor="systemd",
        state_dir=state_dir,
        gpu_total_mib=TOTALS,
    )


def test_start_writes_the_unit_and_secrets_then_starts_and_reports_pid_and_start_time(
    tmp_path: Path,
) -> None:
    fake = FakeSystemctl(NOT_FOUND, STARTING, RUNNING)
    r = systemd_rendered(state_dir=tmp_path / "state")
    assert executor(tmp_path, fake).start(r) == (48213, 1700000000.25)
    props = ",".join(SHOW_PROPERTIES)
    assert fake.calls == [
        ["systemctl", "--user", "daemon-reload"],
        ["systemctl", "--user", "show", "-p", props, "reconciler-chat.service"],
        ["systemctl", "--user", "start", "reconciler-chat.service"],
        ["systemctl", "--user", "show", "-p", props, "reconciler-chat.service"],
        ["systemctl", "--user", "show", "-p", props, "reconciler-chat.service"],
    ]
    unit = tmp_path / "units" / "reconciler-chat.service"
    assert unit.read_text() == r.unit_text
    assert stat.S_IMODE(unit.stat().st_mode) == 0o644
    secrets = Path(r.env_file or "")
    assert secrets.parent == tmp_path / "state"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
    assert 'HF_TOKEN="hf_secret_value_42"' in secrets.read_text()
    assert "hf_secret_value_42" not in unit.read_text()


def test_an_unchanged_unit_is_not_reloaded_and_a_failed_one_is_reset(tmp_path: Path) -> None:
    r = systemd_rendered(state_dir=tmp_path / "state")
    executor(tmp_path, FakeSystemctl(RUNNING)).install(r)
    fake = FakeSystemctl(FAILED, RUNNING)
    executor(tmp_path, fake).start(r)
    assert fake.verbs() == ["show", "reset-failed", "start", "show"]


@pytest.mark.parametrize("state", [FAILED, RESTARTING, INACTIVE])
def test_a_unit_that_stops_at_once_is_an_error_pointing_at_its_journal(
    tmp_path: Path, state: str
) -> None:
    fake = FakeSystemctl(NOT_FOUND, state)
    with pytest.raises(ApplyError, match=r"stopped right after it started") as excinfo:
        executor(tmp_path, fake).start(systemd_rendered(state_dir=tmp_path / "s"))
    assert "journalctl --user -u reconciler-chat.service -n 50 --no-pager" in str(excinfo.value)


def test_a_unit_that_never_becomes_active_times_out(tmp_path: Path) -> None:
    ticks = iter(range(100))
    fake = FakeSystemctl(NOT_FOUND, STARTING)
    ex = executor(tmp_path, fake, clock=lambda: float(next(ticks)))
    with pytest.raises(ApplyError, match=r"is activating \(dead\) after 5 s; see `systemctl"):
        ex.start(systemd_rendered(state_dir=tmp_path / "s"), timeout_s=5)


def test_stop_checks_the_main_pid_the_caller_verified(tmp_path: Path) -> None:
    fake = FakeSystemctl(RUNNING)
    ex = executor(tmp_path, fake)
    ex.stop("reconciler-chat", pid=48213)
    assert fake.calls[-1] == ["systemctl", "--user", "stop", "reconciler-chat.service"]
    with pytest.raises(ApplyError, match="runs pid 48213, not 777 as the journal says"):
        ex.stop("reconciler-chat", pid=777)
    assert fake.verbs() == ["show", "stop", "show"]  # nothing stopped the second time


def test_remove_stops_and_deletes_the_unit_and_its_secrets(tmp_path: Path) -> None:
    r = systemd_rendered(state_dir=tmp_path / "state")
    executor(tmp_path, FakeSystemctl(RUNNING)).install(r)
    fake = FakeSystemctl(INACTIVE)
    executor(tmp_path, fake).remove(r.unit, env_file=r.env_file)
    assert fake.verbs() == ["stop", "daemon-reload"]
    assert list((tmp_path / "units").iterdir()) == []
    assert not Path(r.env_file or "").exists()


def test_system_scope_and_where_units_go(tmp_path: Path) -> None:
    fake = FakeSystemctl(RUNNING)
    ex = SystemdExecutor(scope="system", runner=fake)
    assert ex.unit_path("reconciler-chat") == Path("/etc/systemd/system/reconciler-chat.service")
    ex.state("reconciler-chat")
    assert fake.calls[0][:2] == ["systemctl", "show"]
    assert ex.logs_argv("reconciler-chat", 20, follow=True) == [
        "journalctl",
        "-u",
        "reconciler-chat.service",
        "-n",
        "20",
        "--no-pager",
        "-f",
    ]
    env = {"HOME": "/home/ada"}
    assert unit_folder("user", env) == Path("/home/ada/.config/systemd/user")
    assert unit_folder("user", {**env, "XDG_CONFIG_HOME": "/cfg"}) == Path("/cfg/systemd/user")


def test_no_user_manager_is_one_line_saying_what_to_do(tmp_path: Path) -> None:
    bus = Completed(1, "", "Failed to connect to bus: No medium found\n")
    fake = FakeSystemctl(fail={"show": bus})
    with pytest.raises(ApplyError) as excinfo:
        executor(tmp_path, fake).state("reconciler-chat")
    assert str(excinfo.value) == (
        "`systemctl --user show -p " + ",".join(SHOW_PROPERTIES) + " reconciler-chat.service` "
        "failed: Failed to connect to bus: No medium found; is there a user session? "
        "(`loginctl enable-linger $USER` keeps one), or use --executor process"
    )


def test_a_unit_without_text_is_not_installed(tmp_path: Path) -> None:
    launch, spec = case("vllm")
    r = render(launch, spec, program="/bin/vllm", state_dir=STATE, gpu_total_mib=TOTALS)
    with pytest.raises(ValueError, match="without a unit"):
        executor(tmp_path, FakeSystemctl()).install(r)


@pytest.mark.skipif(
    not Path(SYSTEMD_ANALYZE).exists(), reason="systemd-analyze is not installed here"
)
@pytest.mark.parametrize("hostile", [False, True], ids=["plain", "hostile"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_systemd_accepts_every_rendered_unit(tmp_path: Path, backend: str, hostile: bool) -> None:
    # systemd checks that the program exists: a real one, in a folder with an odd name.
    odd = "my bin 100% é 模型" if hostile else "bin"
    program = tmp_path / odd / "server"
    program.parent.mkdir()
    program.write_text("#!/bin/sh\nexit 0\n")
    program.chmod(0o755)
    state = tmp_path / ("state dir 100% $HOME" if hostile else "state")
    state.mkdir()
    launch, spec = case(backend, hostile=hostile)
    r = render(
        launch,
        spec,
        program=str(program),
        executor="systemd",
        state_dir=state,
        gpu_total_mib=TOTALS,
    )
    assert r.unit_text is not None
    if hostile:
        assert HOSTILE not in r.unit_text  # it is there, but quoted
    unit = tmp_path / "units" / f"{r.unit}.service"
    unit.parent.mkdir()
    unit.write_text(r.unit_text)
    done = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    ours = [line for line in (done.stdout + done.stderr).splitlines() if r.unit in line]
    assert done.returncode == 0, done.stdout + done.stderr
    assert ours == []


@pytest.mark.skipif(
    not Path(SYSTEMD_ANALYZE).exists(), reason="systemd-analyze is not installed here"
)
def test_systemd_analyze_catches_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: a program that does not exist is reported."""
    unit = tmp_path / "reconciler-x.service"
    unit.write_text("[Service]\nType=exec\nExecStart=/no/such/program\n")
    done = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode != 0
    assert "/no/such/program" in done.stdout + done.stderr
