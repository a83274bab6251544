"""A stand-in model server for end-to-end tests of apply: a real process with a real port.

    python tiny_server.py PORT [--health 200] [--ready-after S] [--exit-after S]

`/health` answers 503 until `--ready-after` seconds have passed, then `--health` (200 by
default: 500 plays a model that never becomes healthy); `/pid` answers its pid; `/env/NAME`
the value of an environment variable. It writes a line per request to stdout (the log).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("port", type=int)
    p.add_argument("--health", type=int, default=200)
    p.add_argument("--ready-after", type=float, default=0.0)
    p.add_argument("--exit-after", type=float, default=0.0)
    args = p.parse_args()
    began = time.monotonic()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/health":
                ready = time.monotonic() - began >= args.ready_after
                code, body = (args.health, "ok") if ready else (503, "loading")
            elif self.path == "/pid":
                code, body = 200, str(os.getpid())
            elif self.path.startswith("/env/"):
                code, body = 200, os.environ.get(self.path[5:], "")
            else:
                code, body = 404, "no such path"
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            print(format % args, flush=True)

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"tiny_server listening on {args.port}", flush=True)
    if args.exit_after:
        threading.Timer(args.exit_after, lambda: os._exit(3)).start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
