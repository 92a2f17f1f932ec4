"""Command line: run / once / demo / check-config / simulate / catalog."""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from monitord import __version__, logs
from monitord.config import DEFAULT_LISTEN_ADDRESS, DEFAULT_PORT, ConfigError, load, parse, parse_listen_address

DEMO_LISTEN_ADDRESS = f"127.0.0.1:{DEFAULT_PORT}"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="monitord", description="Conferencing quality exporter for Prometheus.")
    parser.add_argument("--version", action="version", version=f"monitord {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--log.level", dest="log_level", default="info",
                       choices=["debug", "info", "warning", "error"])
        p.add_argument("--log.format", dest="log_format", default="auto", choices=["auto", "json", "console"],
                       help="auto: JSON unless stderr is a terminal")

    p = sub.add_parser("run", help="run the daemon")
    p.add_argument("--config.file", dest="config_file", required=True, type=Path)
    p.add_argument("--web.listen-address", dest="listen_address", default=None,
                   help=f"HOST:PORT to serve /metrics on (default: web.listen_address, {DEFAULT_LISTEN_ADDRESS})")
    common(p)

    p = sub.add_parser("check-config", help="validate a config file; exit 1 listing every problem")
    p.add_argument("--config.file", dest="config_file", required=True, type=Path)
    common(p)

    p = sub.add_parser("once", help="poll every target once and print the exposition")
    p.add_argument("--config.file", dest="config_file", required=True, type=Path)
    p.add_argument("--openmetrics", action="store_true", help="print OpenMetrics instead of Prometheus text")
    common(p)

    p = sub.add_parser("demo", help="run the built-in simulators and the daemon polling them")
    p.add_argument("--web.listen-address", dest="listen_address", default=DEMO_LISTEN_ADDRESS)
    p.add_argument("--simulate.host", dest="sim_host", default="127.0.0.1")
    p.add_argument("--simulate.base-port", dest="sim_base_port", type=int, default=None,
                   help="first simulator port (default 10530; 0 picks free ports)")
    common(p)

    p = sub.add_parser("simulate", help="run only the vendor simulators")
    p.add_argument("--simulate.host", dest="sim_host", default="127.0.0.1")
    p.add_argument("--simulate.base-port", dest="sim_base_port", type=int, default=None)
    common(p)

    p = sub.add_parser("catalog", help="print the metric catalog (Markdown)")
    p.add_argument("--config-reference", action="store_true", help="print the config key reference instead")
    return parser


def _configure_logs(args: argparse.Namespace) -> None:
    fmt = getattr(args, "log_format", "auto")
    logs.configure(getattr(args, "log_level", "info"), json=None if fmt == "auto" else fmt == "json")


def _print_problems(exc: ConfigError) -> None:
    print(f"{exc.source or 'config'}: {len(exc.problems)} problem(s):", file=sys.stderr)
    for problem in exc.problems:
        print(f"  {problem}", file=sys.stderr)


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        config = load(args.config_file)
    except ConfigError as exc:
        _print_problems(exc)
        return 1
    print(f"{args.config_file}: OK, {len(config.targets)} target(s)")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from monitord.app import Daemon, serve

    try:
        config = load(args.config_file)
        listen_address = args.listen_address or config.web.listen_address
        parse_listen_address(listen_address)
    except ConfigError as exc:
        _print_problems(exc)
        return 1
    except ValueError as exc:
        print(f"--web.listen-address: {exc}", file=sys.stderr)
        return 1

    async def main() -> None:
        daemon = Daemon(config, config_path=args.config_file)
        daemon.start()
        await serve(daemon, listen_address)

    try:
        asyncio.run(main())
    except OSError as exc:  # the state directory or the port: say which, without a traceback
        print(f"monitord: cannot start: {logs.scrub(str(exc))}", file=sys.stderr)
        return 1
    return 0


def cmd_once(args: argparse.Namespace) -> int:
    from monitord.app import Daemon
    from monitord.snapshot import OPENMETRICS, TEXT

    try:
        config = load(args.config_file)
    except ConfigError as exc:
        _print_problems(exc)
        return 1

    async def main() -> int:
        daemon = Daemon(config, config_path=args.config_file)
        daemon.start(schedule=False)
        try:
            outcomes = await daemon.poll_all_once()
            exposition = daemon.store.render(OPENMETRICS if args.openmetrics else TEXT).decode()
        finally:
            await daemon.close()
        sys.stdout.write(exposition)
        failed = {name: o for name, o in outcomes.items() if not o.ok}
        for name, outcome in sorted(failed.items()):
            print(f"target {name} failed: {outcome.detail}", file=sys.stderr)
        return 1 if failed else 0

    return asyncio.run(main())


def cmd_simulate(args: argparse.Namespace) -> int:
    from monitord import simulators

    base_port = simulators.BASE_PORT if args.sim_base_port is None else args.sim_base_port

    async def main() -> None:
        running = await simulators.start(args.sim_host, base_port)
        for kind, url in sorted(running.urls.items()):
            print(f"simulator {kind}: {url}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await running.close()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from monitord import simulators
    from monitord.app import Daemon, serve

    base_port = simulators.BASE_PORT if args.sim_base_port is None else args.sim_base_port

    async def main() -> None:
        running = await simulators.start(args.sim_host, base_port)
        state_dir = tempfile.mkdtemp(prefix="monitord-demo-")
        raw = simulators.demo_config(running.urls)
        raw["global"]["state_dir"] = state_dir
        config = parse(raw, source="built-in demo config")
        for kind, url in sorted(running.urls.items()):
            print(f"simulator {kind}: {url}", flush=True)

        def started(url: str) -> None:
            print(f"monitord demo: {len(config.targets)} simulated targets", flush=True)
            print(f"metrics: {url}/metrics", flush=True)
            print(f"status page: {url}/", flush=True)

        daemon = Daemon(config)
        daemon.start()
        try:
            await serve(daemon, args.listen_address, started=started)
        finally:
            await running.close()

    asyncio.run(main())
    return 0


def cmd_catalog(args: argparse.Namespace) -> int:
    from monitord.catalog import config_markdown, markdown

    sys.stdout.write(config_markdown() if args.config_reference else markdown())
    return 0


COMMANDS = {
    "run": cmd_run,
    "check-config": cmd_check_config,
    "once": cmd_once,
    "demo": cmd_demo,
    "simulate": cmd_simulate,
    "catalog": cmd_catalog,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _configure_logs(args)
    return COMMANDS[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
