"""The systemd executor: one unit `reconciler-<model>.service` per instance.

`--user` scope by default (units in `$XDG_CONFIG_HOME/systemd/user`, `systemctl --user`),
or the system scope (`/etc/systemd/system`, `systemctl`). Units are written, not enabled:
the reconciler decides what runs; their `[Install]` section is there for whoever wants
`systemctl enable` them by hand.

- `install(rendered)`: writes the model's secret `env` values to the unit's environment
  file (0600, in the state folder), then the unit (atomically), then `daemon-reload`;
- `start(rendered)`: installs, starts, waits until the unit is active with a main pid, and
  returns (pid, process start time) for the journal;
- `stop(unit, pid=...)`: stops the unit (systemd sends SIGTERM to the whole control group,
  waits `TimeoutStopSec`, then SIGKILL: vLLM's workers included), refusing when the unit's
  main pid is not the one the caller verified;
- `state(unit)`: `systemctl show` parsed (`UnitState`);
- `remove(unit)`: stops it and deletes its unit and environment files.

Every command is an argv list run by `runner` (subprocess by default; tests inject a fake).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import psutil

from reconciler.apply.quoting import QuotingError, env_file_text
from reconciler.apply.units import Rendered
from reconciler.atomicfile import write_atomically
from reconciler.errors import ApplyError

__all__ = [
    "SHOW_PROPERTIES",
    "Completed",
    "Runner",
    "SystemdExecutor",
    "UnitState",
    "parse_show",
    "run_command",
    "write_unit",
]

SHOW_PROPERTIES = (
    "LoadState",
    "ActiveState",
    "SubState",
    "MainPID",
    "ExecMainStartTimestampMonotonic",
    "ExecMainStatus",
    "Result",
    "NRestarts",
)
COMMAND_TIMEOUT_S = 120.0  # stop waits for TimeoutStopSec; a command hung longer is stuck


@dataclass(frozen=True)
class Completed:
    """What a command did: exit status and output."""

    returncode: int
    stdout: str = ""
    stderr: str = ""


Runner = Callable[[Sequence[str]], Completed]


def run_command(argv: Sequence[str]) -> Completed:
    """Run `argv` (a list, never a shell string) and collect its output."""
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False
        )
    except FileNotFoundError:
        raise ApplyError(
            f"{argv[0]} not found: the systemd executor needs systemd; use --executor process"
        ) from None
    except subprocess.TimeoutExpired:
        raise ApplyError(
            f"`{' '.join(argv)}` did not finish in {COMMAND_TIMEOUT_S:.0f} s; "
            "see `systemctl status` and the journal"
        ) from None
    return Completed(done.returncode, done.stdout, done.stderr)


@dataclass(frozen=True)
class UnitState:
    """A unit as `systemctl show` reports it."""

    unit: str
    load_state: str = "not-found"  # loaded | not-found | bad-setting | error | masked
    active_state: str = "inactive"  # active | activating | deactivating | inactive | failed
    sub_state: str = "dead"  # service: running | start | exited | auto-restart | failed ...
    main_pid: int = 0  # 0 when no process runs
    start_monotonic_us: int = 0  # when the main process started (CLOCK_MONOTONIC, µs)
    exit_status: int | None = None
    result: str = ""  # success | exit-code | signal | timeout | start-limit-hit ...
    restarts: int = 0

    @property
    def running(self) -> bool:
        return self.active_state == "active" and self.main_pid > 0

    @property
    def loaded(self) -> bool:
        return self.load_state == "loaded"


def _int(value: str | None) -> int | None:
    if value is None or not value.strip().lstrip("-").isdigit():
        return None
    return int(value)


def parse_show(text: str, unit: str) -> UnitState:
    """`systemctl show -p ...` output (`Key=Value` lines, any order) as a `UnitState`."""
    props: dict[str, str] = {}
    for line in text.splitlines():
        key, eq, value = line.partition("=")
        if eq:
            props[key.strip()] = value.strip()
    return UnitState(
        unit=unit,
        load_state=props.get("LoadState") or "not-found",
        active_state=props.get("ActiveState") or "inactive",
        sub_state=props.get("SubState") or "dead",
        main_pid=_int(props.get("MainPID")) or 0,
        start_monotonic_us=_int(props.get("ExecMainStartTimestampMonotonic")) or 0,
        exit_status=_int(props.get("ExecMainStatus")),
        result=props.get("Result", ""),
        restarts=_int(props.get("NRestarts")) or 0,
    )


def process_start_time(pid: int) -> float | None:
    """A process's start time as the journal and the observer record it (psutil)."""
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        return None


def unit_folder(scope: Literal["user", "system"], environ: Mapping[str, str]) -> Path:
    """Where units of `scope` are written: `$XDG_CONFIG_HOME/systemd/user` (default
    `~/.config`) or `/etc/systemd/system`."""
    if scope == "system":
        return Path("/etc/systemd/system")
    home = Path(environ.get("HOME") or Path.home())
    return Path(environ.get("XDG_CONFIG_HOME") or home / ".config") / "systemd" / "user"


def _write_atomically(path: Path, text: str, mode: int) -> bool:
    """Write `text` to `path` whole or not at all, with `mode`; False when it was already so."""
    try:
        if path.read_text() == text and (path.stat().st_mode & 0o777) == mode:
            return False
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, text, mode)
    return True


def write_unit(path: Path, text: str) -> bool:
    """A unit file written whole (0644); False when it already said that."""
    try:
        return _write_atomically(path, text, 0o644)
    except OSError as exc:
        raise ApplyError(f"{path}: cannot write the unit ({exc.strerror})") from None


class SystemdExecutor:
    """Starts, stops and reports units through `systemctl` (see the module's docstring)."""

    def __init__(
        self,
        *,
        scope: Literal["user", "system"] = "user",
        unit_dir: Path | None = None,
        runner: Runner = run_command,
        start_time: Callable[[int], float | None] = process_start_time,
        environ: Mapping[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.scope = scope
        self.unit_dir = unit_dir or unit_folder(scope, os.environ if environ is None else environ)
        self._run = runner
        self._start_time = start_time
        self._sleep = sleep
        self._clock = clock

    def systemctl(self, *args: str) -> list[str]:
        """The argv of `systemctl [--user] ARGS`."""
        return ["systemctl", *(["--user"] if self.scope == "user" else []), *args]

    def unit_path(self, unit: str) -> Path:
        return self.unit_dir / _service(unit)

    def systemctl_check(self, *args: str) -> Completed:
        """`systemctl [--user] ARGS`, one clear ApplyError when it fails."""
        return self._check(*args)

    def _check(self, *args: str, unit: str | None = None) -> Completed:
        argv = self.systemctl(*args)
        done = self._run(argv)
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines()
            why = lines[0] if lines else f"exit status {done.returncode}"
            if "bus" in why.lower():
                hint = (
                    "; is there a user session? (`loginctl enable-linger $USER` keeps one), "
                    "or use --executor process"
                )
            elif unit is not None:
                hint = f"; see `{' '.join(self.systemctl('status', unit))}`"
            else:
                hint = ""
            raise ApplyError(f"`{' '.join(argv)}` failed: {why}{hint}")
        return done

    def install(self, rendered: Rendered) -> Path:
        """Write the unit (and its secrets' environment file, 0600); daemon-reload when
        either changed. Returns the unit file's path."""
        if rendered.unit_text is None:
            raise ValueError(f"{rendered.unit} was rendered without a unit (executor process)")
        if rendered.env_file is not None:
            secrets = {k: v for k, v in rendered.env.items() if k in rendered.secret_names}
            header = f"Written by `reconcile apply` for {rendered.model}: its env values."
            try:
                text = env_file_text(secrets, header)
            except QuotingError as exc:
                raise ApplyError(f"{rendered.model}: env: {exc}") from None
            Path(rendered.env_file).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            changed = _write_atomically(Path(rendered.env_file), text, 0o600)
        else:
            changed = False
        path = self.unit_path(rendered.unit)
        changed = _write_atomically(path, rendered.unit_text, 0o644) or changed
        if changed:
            self._check("daemon-reload")
        return path

    def state(self, unit: str) -> UnitState:
        name = _service(unit)
        done = self._check("show", "-p", ",".join(SHOW_PROPERTIES), name, unit=name)
        return parse_show(done.stdout, unit)

    def start(self, rendered: Rendered, *, timeout_s: float = 30.0) -> tuple[int, float]:
        """Install and start `rendered`; (main pid, its start time) once the unit is active.
        A unit left failed by an earlier run is reset first (its start limit included)."""
        self.install(rendered)
        unit = _service(rendered.unit)
        if self.state(rendered.unit).active_state == "failed":
            self._check("reset-failed", unit, unit=unit)
        self._check("start", unit, unit=unit)
        deadline = self._clock() + timeout_s
        while True:
            now = self.state(rendered.unit)
            if now.running:
                started = self._start_time(now.main_pid)
                if started is not None:
                    return now.main_pid, started
            elif now.active_state in ("failed", "inactive") or now.sub_state == "auto-restart":
                raise ApplyError(
                    f"{rendered.model}: {unit} stopped right after it started "
                    f"({now.result or now.sub_state}, exit status {now.exit_status}); "
                    f"see `{' '.join(self.logs_argv(rendered.unit))}`"
                )
            if self._clock() >= deadline:
                raise ApplyError(
                    f"{rendered.model}: {unit} is {now.active_state} ({now.sub_state}) after "
                    f"{timeout_s:.0f} s; see `{' '.join(self.systemctl('status', unit))}`"
                )
            self._sleep(0.25)

    def stop(self, unit: str, *, pid: int | None = None) -> None:
        """Stop `unit`: systemd signals its whole control group and waits `TimeoutStopSec`.
        With `pid`, refuse unless the unit's main process is that pid (verified by the
        caller as ours: pid + start time + label)."""
        if pid is not None:
            now = self.state(unit)
            if now.main_pid not in (0, pid):
                raise ApplyError(
                    f"{_service(unit)} runs pid {now.main_pid}, not {pid} as the journal says; "
                    "not stopping it: run `reconcile plan` again"
                )
        self._check("stop", _service(unit), unit=_service(unit))

    def remove(self, unit: str, *, env_file: str | None = None) -> None:
        """Stop `unit` and delete its unit file (then daemon-reload) and its environment
        file (`Rendered.env_file`)."""
        self.stop(unit)
        path = self.unit_path(unit)
        existed = path.exists()
        path.unlink(missing_ok=True)
        if env_file is not None:
            Path(env_file).unlink(missing_ok=True)
        if existed:
            self._check("daemon-reload")

    def logs_argv(self, unit: str, lines: int = 50, *, follow: bool = False) -> list[str]:
        """`journalctl` showing `unit`'s output (where systemd sends it)."""
        scope = ["--user"] if self.scope == "user" else []
        return [
            "journalctl",
            *scope,
            "-u",
            _service(unit),
            "-n",
            str(lines),
            "--no-pager",
            *(["-f"] if follow else []),
        ]


def _service(unit: str) -> str:
    return unit if unit.endswith(".service") else f"{unit}.service"
