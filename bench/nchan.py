"""nginx + nchan as a fan-out peer: a C pub/sub relay, no database, no batching of its own.

Needs Debian's ``nginx-light`` and ``libnginx-mod-nchan``::

    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y nginx-light libnginx-mod-nchan

:func:`nchan_server` writes an ``nginx.conf`` into a temporary directory (listening on 127.0.0.1,
no daemon, pid, logs and temp files all in that directory, the nchan module loaded), starts
nginx in the foreground and stops it afterwards. ``POST /pub`` publishes its body as ONE nchan
message, so the load tool's JSON list of events becomes one SSE message (what Mercure advises a
publisher to do); ``GET /sub`` is an EventSource subscriber. nchan adds no ``seq`` or ``ts`` to
what it relays, so the load tool runs with ``--stamp-events --publish-path /pub --stream-path /sub``
(:data:`LOADTEST_ARGS`); its message ids (``id: 1764611234:0``) are counted, never parsed.

Run alone: ``python -m bench.nchan --port 8003`` (serves until Ctrl-C).
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx

__all__ = ["LOADTEST_ARGS", "NGINX", "PUBLISH_PATH", "STREAM_PATH", "main", "nchan_config", "nchan_server"]

NGINX = "/usr/sbin/nginx"
MODULE = "/usr/lib/nginx/modules/ngx_nchan_module.so"
PUBLISH_PATH = "/pub"
STREAM_PATH = "/sub"
LOADTEST_ARGS = ["--stamp-events", "--publish-path", PUBLISH_PATH, "--stream-path", STREAM_PATH]


def nchan_config(
    root: Path, port: int, *, workers: int = 1, max_connections: int = 24_000, ping_seconds: int = 15
) -> str:
    """The nginx.conf text: one channel, a publisher and an EventSource subscriber location.

    Subscribers get a ``: ping`` comment every ``ping_seconds``, as sse-batcher's do.
    """
    temp = {name: root / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for path in temp.values():
        path.mkdir(exist_ok=True)
    return f"""
load_module {MODULE};
daemon off;
master_process on;
worker_processes {workers};
worker_rlimit_nofile {max_connections + 1000};
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections {max_connections}; }}
http {{
    access_log off;
    client_body_temp_path {temp["body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};
    # A POST body stays in memory: the load tool posts up to a few hundred events at once.
    client_max_body_size 8m;
    client_body_buffer_size 1m;
    nchan_shared_memory_size 256m;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location = {PUBLISH_PATH} {{
            nchan_publisher http;
            nchan_channel_id loadtest;
            # Enough history that no subscriber that falls behind a burst misses a message.
            nchan_message_buffer_length 10000;
            nchan_message_timeout 5m;
        }}
        location = {STREAM_PATH} {{
            nchan_subscriber eventsource;
            nchan_channel_id loadtest;
            nchan_eventsource_event LOAD_TEST_BATCH;
            nchan_eventsource_ping_interval {ping_seconds};
            nchan_eventsource_ping_comment ping;
        }}
    }}
}}
"""


@contextmanager
def nchan_server(port: int, *, workers: int = 1, start_seconds: float = 20.0) -> Iterator[subprocess.Popen[bytes]]:
    """Run nginx + nchan on ``127.0.0.1:port`` for the block; yields the nginx master process.

    Raises:
        RuntimeError: nginx is not installed, or did not answer within ``start_seconds``.
    """
    if not Path(NGINX).exists() or not Path(MODULE).exists():
        raise RuntimeError("nginx + nchan not installed: apt-get install -y nginx-light libnginx-mod-nchan")
    root = Path(tempfile.mkdtemp(prefix="sse-nchan-"))
    try:
        conf = root / "nginx.conf"
        conf.write_text(nchan_config(root, port, workers=workers))
        process = subprocess.Popen([NGINX, "-p", str(root), "-c", str(conf)], stdout=subprocess.DEVNULL)
        try:
            _wait_ready(port, process, root, start_seconds)
            yield process
        finally:
            process.send_signal(signal.SIGQUIT)  # graceful: workers finish, then the master exits
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _wait_ready(port: int, process: subprocess.Popen[bytes], root: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = (root / "error.log").read_text() if (root / "error.log").exists() else ""
            raise RuntimeError(f"nginx exited with {process.returncode}: {log[-1000:]}")
        with suppress(httpx.HTTPError):
            # GET on the publisher location answers with the channel's state (404: no channel yet).
            if httpx.get(f"http://127.0.0.1:{port}{PUBLISH_PATH}", timeout=1).status_code < 500:
                return
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"nginx did not answer in {seconds:g} s")


def main(argv: list[str] | None = None) -> int:
    """Serve nginx + nchan on a port until interrupted."""
    parser = argparse.ArgumentParser(prog="bench.nchan", description=__doc__)
    parser.add_argument("--port", type=int, default=8003)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)  # a kill stops nginx and removes its directory too
    with nchan_server(args.port, workers=args.workers):
        print(f"nchan: publish POST http://127.0.0.1:{args.port}{PUBLISH_PATH}, subscribe {STREAM_PATH}", flush=True)
        with suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
