"""The sse-batcher command: serve runs the server, loadtest measures one.

A bad setting is one line on stderr and exit 2: constants are read on use, so building the parser
reads none of them, and ServerConfig.from_env's error is the line.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import replace

from sse_batcher import constants
from sse_batcher.batcher import AggregationRules
from sse_batcher.server.config import LOG_LEVELS, ServerConfig

__all__ = ["main"]

# --help shows this as is: plain text, no markup.
_DESCRIPTION = "sse-batcher: serve runs the server, loadtest measures one."


def settings_help() -> str:
    """Every environment variable ``serve`` reads, by section, with its default and bounds."""
    lines = ["environment (every setting; see docs/configuration.md):"]
    section = ""
    for setting in constants.SETTINGS:
        if setting.section != section:
            section = setting.section
            lines.append(f"  {section}:")
        bounds = f", {setting.bounds}" if setting.bounds else ""
        # The docs are Markdown; the terminal shows them without the code marks.
        doc = setting.doc.replace("`", "")
        lines.append(f"    {setting.name} (default {setting.shown_default}{bounds}): {doc}")
    return "\n".join(lines)


def _default(name: str) -> str:
    """A setting's default as --help shows it (never the environment's value, which may be bad)."""
    return constants.setting(name).shown_default


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sse-batcher", description=_DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser(
        "serve",
        help="run the server (dashboard, SSE stream, publish API)",
        epilog=settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument(
        "--host", default=None, help=f"address to listen on (default SSE_HOST, else {_default('SSE_HOST')})"
    )
    serve.add_argument(
        "--port", type=int, default=None, help=f"port to listen on (default SSE_PORT, else {_default('SSE_PORT')})"
    )
    serve.add_argument(
        "--database-url",
        default=None,
        help="PostgreSQL URL (default: DATABASE_URL, else an embedded PostgreSQL under SSE_DATA_DIR)",
    )
    serve.add_argument(
        "--demo",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run the demo render farm (simulated jobs); default: on with the embedded database, off with DATABASE_URL",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=None,
        help=f"server processes sharing the port, one PostgreSQL (default SSE_WORKERS, else {_default('SSE_WORKERS')})",
    )
    serve.add_argument("--log-level", default="info", choices=LOG_LEVELS)

    load = commands.add_parser("loadtest", help="open SSE clients, publish at a fixed rate, report delivery")
    load.add_argument("--url", default="http://127.0.0.1:8000", help="the server's base URL")
    load.add_argument("--clients", type=int, default=50, help="SSE clients to open")
    load.add_argument("--rate", type=float, default=1000.0, help="events per second to publish")
    load.add_argument("--count", type=int, default=None, help="events to publish (default: rate x duration)")
    load.add_argument("--duration", type=float, default=10.0, help="seconds to publish for")
    load.add_argument("--batch-per-request", type=int, default=50, help="events per POST")
    load.add_argument("--token", default=None, help="bearer token for publish and subscribe")
    load.add_argument("--json", action="store_true", help="print the result as one JSON line")
    load.add_argument("--settle", type=float, default=10.0, help="seconds to wait for delivery after publishing")
    load.add_argument("--publish-path", default="/api/events", help="path to POST the events to")
    load.add_argument("--stream-path", default="/events", help="path of the SSE stream")
    load.add_argument(
        "--stamp-events",
        action="store_true",
        help="put seq and ts into each posted event (for a relay that assigns none, such as nchan)",
    )
    load.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    load.add_argument(
        "--publisher-process", action="store_true", help="publish from a second process, apart from the readers"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    args = _parser().parse_args(argv)
    if args.command == "serve":
        overrides: dict[str, object] = {"log_level": args.log_level}
        if args.host is not None:
            overrides["host"] = args.host
        if args.port is not None:
            overrides["port"] = args.port
        if args.database_url is not None:
            overrides["database_url"] = args.database_url
        if args.workers is not None:
            overrides["workers"] = args.workers
        try:
            config = ServerConfig.from_env(**overrides)
            # The demo writes simulated jobs: into a database of your own only when asked.
            demo = config.database_url is None if args.demo is None else args.demo
            config = replace(config, demo=demo)
            if config.rules_file is not None:
                AggregationRules.from_toml(config.rules_file)  # a bad rules file fails here, clearly
        except ValueError as exc:
            print(f"sse-batcher: {exc}", file=sys.stderr)
            return 2
        if config.workers > 1:
            from sse_batcher.server.serving.supervisor import run_workers

            return run_workers(config)
        from sse_batcher.server.serving.serve import run

        return run(config)
    from sse_batcher.server.client.loadtest import LoadTestOptions, run_loadtest

    options = LoadTestOptions(
        url=args.url,
        clients=args.clients,
        rate=args.rate,
        count=args.count,
        duration_seconds=args.duration,
        batch_per_request=args.batch_per_request,
        token=args.token,
        json_output=args.json,
        settle_seconds=args.settle,
        progress=not args.quiet,
        publish_path=args.publish_path,
        stream_path=args.stream_path,
        stamp_events=args.stamp_events,
        publisher_process=args.publisher_process,
    )
    return run_loadtest(options)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
