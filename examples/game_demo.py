"""Play "a game starts, takes 10 GiB, quits" against a snapshot for `reconcile watch --observed`.

    python3 examples/game_demo.py SNAPSHOT [GPU] [MIB] [SECONDS]

SNAPSHOT is a file written by `reconcile status --json` (or `--profile NAME --json`) that a
watcher reads every cycle. The game (a graphics process, pid 4242, "game.exe") appears on GPU
(default 0) holding MIB (default 10240), stays SECONDS (default 20), then quits. Every rewrite
is atomic: a temporary file beside the snapshot, renamed over it, so the watcher never reads
half a file. Ctrl-C quits the game early. Only the Python standard library is needed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

GAME = {"pid": 4242, "kind": "graphics", "name": "game.exe", "user": None, "cmdline": []}


def rewrite(snapshot: Path, gpu_index: int, mib: int) -> None:
    """The snapshot with the game holding `mib` on the GPU (0: the game has quit)."""
    state: dict[str, Any] = json.loads(snapshot.read_text())
    gpus = [g for g in state["gpus"] if g["index"] == gpu_index]
    if not gpus:
        indices = ", ".join(str(g["index"]) for g in state["gpus"])
        raise SystemExit(f"{snapshot} has no GPU {gpu_index} (it has: {indices})")
    gpu = gpus[0]
    gpu["processes"] = [p for p in gpu["processes"] if p["pid"] != GAME["pid"]]
    others = sum(p["used_mib"] or 0 for p in gpu["processes"])
    if mib:
        gpu["processes"].append({**GAME, "used_mib": mib, "owner": "foreign", "instance": None})
    gpu["memory_used_mib"] = others + mib
    gpu["memory_free_mib"] = max(gpu["memory_total_mib"] - others - mib, 0)
    tmp = snapshot.with_name(f".{snapshot.name}.tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    os.replace(tmp, snapshot)


def say(text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {text}", flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("snapshot", type=Path, help="the file `reconcile watch --observed` reads")
    p.add_argument("gpu", type=int, nargs="?", default=0, help="GPU index (default 0)")
    p.add_argument("mib", type=int, nargs="?", default=10240, help="MiB it takes (10240)")
    p.add_argument("seconds", type=float, nargs="?", default=20.0, help="how long it runs (20)")
    args = p.parse_args()
    if not args.snapshot.is_file():
        raise SystemExit(
            f"{args.snapshot}: no such file; write one first: "
            f"reconcile status --profile rtx3060-12g --json > {args.snapshot}"
        )
    say(f"game.exe starts on GPU {args.gpu} and takes {args.mib} MiB")
    rewrite(args.snapshot, args.gpu, args.mib)
    try:
        time.sleep(args.seconds)
    except KeyboardInterrupt:
        say("interrupted")
    finally:
        rewrite(args.snapshot, args.gpu, 0)
        say(f"game.exe quits; GPU {args.gpu} has its {args.mib} MiB back")
    return 0


if __name__ == "__main__":
    sys.exit(main())
