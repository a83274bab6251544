"""From a resolved `Launch` to what an executor starts: argv, environment, health, unit text.

Templates (Jinja2, StrictUndefined, no autoescape) come from the package's `templates/`
folder (installed as `reconciler/templates`); a user folder (`templates:` in the desired file,
or `--templates DIR`, which wins) overrides them file by file:

- `backends/<backend>.j2` renders the argv as a JSON array of strings (each written with the
  `arg` filter): a list, never a shell string;
- `systemd/reconciler.service.j2` renders the unit (with `--executor systemd`), every value
  through a filter that quotes it for systemd (`reconciler.apply.quoting`).

The environment is built here, not in templates: our label (`RECONCILER_INSTANCE=<model>`),
`CUDA_VISIBLE_DEVICES` (the launch's GPU or MIG UUIDs; empty for the CPU) with
`CUDA_DEVICE_ORDER=PCI_BUS_ID`, Ollama's settings, and the model's `env` values. The model's
values are secrets: their names are in `Rendered.secret_names`, and a unit holds none of them
(they go into its `EnvironmentFile=`, written 0600 by the systemd executor).

vLLM's memory: `--gpu-memory-utilization` is the plan's MiB on each of its GPUs divided by that
GPU's total, the smallest such fraction rounded down to 0.001. The Launch does not carry GPU
totals: the caller passes them (`gpu_total_mib`, label -> MiB: the plan's `gpus[].total_mib`).
vLLM refuses to start while less than that fraction is free, so co-located instances start one
after another (the applier's order).
"""

from __future__ import annotations

import functools
import ipaddress
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import jinja2

from reconciler.apply.quoting import (
    QuotingError,
    json_arg,
    systemd_arg,
    systemd_command,
    systemd_env,
    systemd_path,
    systemd_text,
)
from reconciler.apply.units import LABEL, Rendered
from reconciler.backends import Modelled, flag_uses
from reconciler.config.desired import ModelSpec
from reconciler.errors import ApplyError
from reconciler.launch import Launch
from reconciler.plan.resolve import as_is_size

__all__ = [
    "API_KEY_FILE",
    "OLLAMA_PORT",
    "UNIT_TEMPLATE",
    "WATCH_TEMPLATE",
    "backend_template",
    "bundled_templates",
    "render",
    "render_watch_unit",
    "unit_name",
    "url_host",
]

UNIT_TEMPLATE = "systemd/reconciler.service.j2"
WATCH_TEMPLATE = "systemd/watch.service.j2"
OLLAMA_PORT = 11434  # Ollama's own default, where a model names no port
API_KEY_FILE = "LLAMA_API_KEY_FILE"  # llama.cpp: a model env naming the key file
START_LIMIT_INTERVAL_S = 300
START_LIMIT_BURST = 5
RESTART_S = 5


def backend_template(backend: str) -> str:
    return f"backends/{backend}.j2"


def unit_name(model: str) -> str:
    """`reconciler-<model>`: the systemd unit (with `.service`), the log, the journal's unit."""
    return f"reconciler-{model}"


def bundled_templates() -> Path:
    """Our templates: `reconciler/templates` in an installed wheel, the top-level
    `templates/` folder in a source checkout (and an editable install)."""
    package = Path(__file__).resolve().parents[1]
    installed = package / "templates"
    return installed if installed.is_dir() else package.parent / "templates"


@functools.lru_cache(maxsize=8)
def _environment(user: Path | None) -> jinja2.Environment:
    folders = [str(user)] if user is not None else []
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([*folders, str(bundled_templates())]),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        arg=json_arg,
        systemd_arg=systemd_arg,
        systemd_command=systemd_command,
        systemd_env=systemd_env,
        systemd_path=systemd_path,
        systemd_text=systemd_text,
    )
    return env


def _template_line(exc: BaseException, filename: str | None) -> int | None:
    """The line of `filename` that raised `exc` (Jinja puts template lines in tracebacks)."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if filename is not None and tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _render_template(user: Path | None, name: str, context: Mapping[str, Any]) -> tuple[str, str]:
    """Template `name` rendered, and the file it came from; every failure is one ApplyError
    naming the file and line."""
    if user is not None and not user.is_dir():
        raise ApplyError(
            f"templates folder {user} does not exist (from --templates or `templates:` in the "
            "desired file); create it, or point it at a folder of overrides"
        )
    env = _environment(user)
    try:
        template = env.get_template(name)
    except jinja2.TemplateNotFound:
        looked = ", ".join(str(p) for p in (user, bundled_templates()) if p is not None)
        raise ApplyError(f"no template {name} in {looked}; is the package complete?") from None
    except jinja2.TemplateSyntaxError as exc:
        where = f"{exc.filename or name}:{exc.lineno}"
        raise ApplyError(f"{where}: {exc.message}; fix the template") from None
    filename = template.filename or name
    try:
        return template.render(dict(context)), filename
    except jinja2.UndefinedError as exc:
        at = _template_line(exc, template.filename)
        where = f"{filename}:{at}" if at else filename
        known = ", ".join(sorted(context))
        raise ApplyError(
            f"{where}: {exc.message}; this template gets: {known} (see templates/README.md)"
        ) from None
    except (QuotingError, jinja2.TemplateError) as exc:
        at = _template_line(exc, template.filename)
        where = f"{filename}:{at}" if at else filename
        raise ApplyError(f"{where}: {exc}") from None


def _argv(user: Path | None, backend: str, context: Mapping[str, Any]) -> tuple[str, ...]:
    text, name = _render_template(user, backend_template(backend), context)
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ApplyError(
            f"{name}: its output is no JSON array ({exc.msg}, line {exc.lineno} of the output); "
            'write a list such as [{{ program | arg }}, "--flag", {{ value | arg }}]'
        ) from None
    if not isinstance(items, list) or not items:
        raise ApplyError(f"{name}: renders {type(items).__name__}, not a non-empty JSON array")
    argv = []
    for i, item in enumerate(items):
        if isinstance(item, bool) or not isinstance(item, str | int):
            raise ApplyError(f"{name}: argument {i} is {item!r}, not a string; use `| arg`")
        if "\0" in str(item):
            raise ApplyError(f"{name}: argument {i} holds a NUL character")
        argv.append(str(item))
    return tuple(argv)


def url_host(host: str) -> str:
    """The host a local client reaches a server on: a wildcard is this machine's loopback."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if address.is_unspecified:
        address = ipaddress.ip_address("::1" if address.version == 6 else "127.0.0.1")
    return f"[{address}]" if address.version == 6 else str(address)


def _bind(host: str, port: int) -> str:
    """host:port as Ollama's OLLAMA_HOST takes it (an IPv6 address in brackets)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return f"{host}:{port}"
    return f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"


def _extra_args(launch: Launch) -> tuple[str, ...]:
    """The model's extra_args, less the llama.cpp flags the launch carries itself (`-ub`,
    `-b`, `--kv-unified`, `--swa-full`): the template writes those from the launch."""
    if launch.backend != "llama.cpp":
        return launch.extra_args
    drop: set[int] = set()
    for use in flag_uses("llama.cpp", launch.extra_args):
        if isinstance(use.entry, Modelled):
            drop.add(use.index)
            if use.value_index >= 0 and not use.inline:
                drop.add(use.value_index)
    return tuple(a for i, a in enumerate(launch.extra_args) if i not in drop)


def _utilization(launch: Launch, spec: ModelSpec, totals: Mapping[str, int] | None) -> str | None:
    """vLLM: the plan's share of each GPU as a fraction of its total (the smallest)."""
    if launch.backend != "vllm" or not launch.gpus:
        return None
    size = as_is_size(launch, None, spec)
    if size is None:
        raise ApplyError(f"{launch.model}: vllm needs `vram_mib` to bound its memory")
    fractions = []
    for label, mib in zip(launch.gpus, size[0], strict=True):
        total = (totals or {}).get(label)
        if not total:
            raise ApplyError(
                f"{launch.model}: no total memory known for GPU {label}; pass the plan's GPUs "
                "(gpu_total_mib) to render a vLLM launch"
            )
        fractions.append(math.floor(1000 * min(mib / total, 1.0)) / 1000)
    fraction = min(fractions)
    if fraction <= 0:
        raise ApplyError(f"{launch.model}: {size[0]} MiB is too little of GPU {launch.gpus}")
    return f"{fraction:.3f}"


def _environment_of(
    launch: Launch, spec: ModelSpec, port: int | None
) -> tuple[dict[str, str], frozenset[str]]:
    env = {
        LABEL: launch.variant,  # the entry that runs: what the journal records
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
        "CUDA_VISIBLE_DEVICES": ",".join(launch.gpu_uuids),
    }
    if launch.backend == "ollama":
        env["OLLAMA_HOST"] = _bind(launch.host, port or OLLAMA_PORT)
        env["OLLAMA_KEEP_ALIVE"] = "-1"
        env["OLLAMA_MAX_LOADED_MODELS"] = "1"
    own = {
        k: v
        for k, v in sorted(spec.env.items())
        if k not in env and not (launch.backend == "llama.cpp" and k == API_KEY_FILE)
    }
    return {**env, **own}, frozenset(own)


def render(
    launch: Launch,
    spec: ModelSpec,
    *,
    program: str,
    executor: Literal["process", "systemd"] = "process",
    templates: Path | None = None,
    state_dir: Path,
    gpu_total_mib: Mapping[str, int] | None = None,
    stop_timeout_s: float = 10.0,
    workdir: Path | None = None,
) -> Rendered:
    """What to start for `launch`: `spec` is the desired entry it runs (`launch.variant`),
    for its `env` values; `program` the resolved path (`resolve_program`); `templates` the
    user's folder of overrides (None: ours alone); `state_dir` where a unit's environment
    file lives; `workdir` the folder the instance runs in (apply: the desired file's, so that
    relative paths in a command mean what they mean beside it; default `state_dir`).
    `ApplyError` for anything that cannot be rendered, naming the template and line."""
    if spec.name != launch.variant:
        raise ValueError(f"spec {spec.name} is not the launch's variant {launch.variant}")
    unit = unit_name(launch.model)
    port = launch.port if launch.port is not None or launch.backend != "ollama" else OLLAMA_PORT
    if port is None and launch.backend != "command":
        raise ApplyError(f"{launch.model}: backend {launch.backend} needs `port`; set it")
    host = url_host(launch.host)
    base = f"http://{host}:{port}"
    env, secrets = _environment_of(launch, spec, port)
    api_key = spec.env.get(API_KEY_FILE) if launch.backend == "llama.cpp" else None
    context: dict[str, Any] = {
        "launch": launch,
        "program": program,
        "model": launch.model,
        "variant": launch.variant,
        "host": launch.host,
        "port": port,
        "args": launch.argv[1:] if launch.argv else (),
        "extra_args": _extra_args(launch),
        "gpu_layers": (
            launch.gpu_layers if launch.gpu_layers is not None else (999 if launch.gpus else 0)
        ),
        "tensor_split": ",".join(f"{s:g}" for s in launch.tensor_split or ()),
        "tensor_parallel": launch.tensor_parallel or max(1, len(launch.gpus)),
        "gpu_memory_utilization": _utilization(launch, spec, gpu_total_mib),
        "api_key_file": api_key,
    }
    argv = _argv(templates, launch.backend, context)
    health, load, ready = _health(launch, spec, base)
    env_file = str(state_dir / f"{unit}.env") if secrets else None
    unit_text = None
    if executor == "systemd":
        unit_text, _file = _render_template(
            templates,
            UNIT_TEMPLATE,
            {
                "model": launch.model,
                "variant": launch.variant,
                "backend": launch.backend,
                "unit": unit,
                "argv": argv,
                "environment": {k: v for k, v in env.items() if k not in secrets},
                "env_file": env_file,
                "state_dir": str(state_dir),
                "workdir": str(workdir or state_dir),
                "stop_timeout_s": f"{stop_timeout_s:g}",
                "start_limit_interval_s": START_LIMIT_INTERVAL_S,
                "start_limit_burst": START_LIMIT_BURST,
                "restart_s": RESTART_S,
            },
        )
    return Rendered(
        model=launch.model,
        variant=launch.variant,
        backend=launch.backend,
        unit=unit,
        argv=argv,
        env=env,
        secret_names=secrets,
        health_url=health,
        load=load,
        ready_url=ready,
        unit_text=unit_text,
        launch_hash=launch.hash,
        env_file=env_file,
        cwd=str(workdir or state_dir),
        extra={"port": port} if port is not None else {},
    )


def _health(
    launch: Launch, spec: ModelSpec, base: str
) -> tuple[str | None, dict[str, Any] | None, str | None]:
    """(health URL, Ollama's load request body, Ollama's ready URL)."""
    if launch.backend == "command":
        return spec.health_url, None, None
    if launch.backend != "ollama":
        return f"{base}/health", None, None
    layers = launch.gpu_layers if launch.gpu_layers is not None else (999 if launch.gpus else 0)
    load = {
        "model": launch.source,
        "prompt": "",
        "keep_alive": -1,
        "options": {"num_ctx": launch.ctx, "num_gpu": layers},
    }
    return f"{base}/api/version", load, f"{base}/api/ps"


def render_watch_unit(argv: Sequence[str], file: Path, *, templates: Path | None = None) -> str:
    """The user service that runs the watcher (`reconcile watch --install-service`)."""
    text, _file = _render_template(
        templates,
        WATCH_TEMPLATE,
        {
            "argv": list(argv),
            "file": str(file),
            "workdir": str(file.parent),
            "start_limit_interval_s": START_LIMIT_INTERVAL_S,
            "start_limit_burst": START_LIMIT_BURST,
            "restart_s": RESTART_S,
        },
    )
    return text
