"""`reconcile watch --install-service`: the watcher as a systemd user service for good.

The unit `reconciler-watch.service` (from `templates/systemd/watch.service.j2`) runs the same
`reconcile watch` command line, with the same options, from the desired file's folder; it is
enabled (it starts at login; `loginctl enable-linger` keeps it running without a login) and
started. `--uninstall-service` stops and disables it and removes the unit; the models keep
running either way (`reconcile down` stops them).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from reconciler.apply.render import render_watch_unit
from reconciler.apply.systemd import SystemdExecutor, write_unit

__all__ = ["WATCH_UNIT", "install_service", "uninstall_service"]

WATCH_UNIT = "reconciler-watch"


def install_service(
    systemd: SystemdExecutor, argv: Sequence[str], file: Path, *, templates: Path | None = None
) -> Path:
    """Write, enable and start the watcher's unit; its path."""
    path = systemd.unit_path(WATCH_UNIT)
    write_unit(path, render_watch_unit(argv, file, templates=templates))
    systemd.systemctl_check("daemon-reload")
    systemd.systemctl_check("enable", "--now", f"{WATCH_UNIT}.service")
    return path


def uninstall_service(systemd: SystemdExecutor) -> Path | None:
    """Stop, disable and remove the watcher's unit; its former path, None if there was none."""
    path = systemd.unit_path(WATCH_UNIT)
    if not path.exists():
        return None
    systemd.systemctl_check("disable", "--now", f"{WATCH_UNIT}.service")
    path.unlink()
    systemd.systemctl_check("daemon-reload")
    return path
