"""Command line: run / once / demo / check-config / simulate / catalog."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from monitord import __version__, logs, redact, replica, sharding
from monitord.config import (
    DEFAULT_LISTEN_ADDRESS,
    DEFAULT_PORT,
    Config,
    ConfigError,
    _parse_duration,
    load,
    parse,
    parse_listen_address,
    secret_placeholders,
)

if TYPE_CHECKING:
    from monitord.web import Surface

DEMO_LISTEN_ADDRESS = f"127.0.0.1:{DEFAULT_PORT}"


class _HelpFormatter(argparse.HelpFormatter):
    """Appends "(default: X)" to every option that has a default worth showing."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if ("%(default)" in text or "(default" in text or "default:" in text
                or default in (None, False, argparse.SUPPRESS) or not action.option_strings):
            return text
        return f"{text} (default: %(default)s)"


CHECK_CONFIG_HELP = """\
Secrets read from the environment (x_env: NAME) or from files (x_file: PATH) must be there for
a config to pass. To dry-run a config elsewhere (CI, a laptop), either set the variables to any
value, e.g.
  EP_PASSWORD=x AVD_ACCESS_KEY=x ... monitord check-config --config.file monitord.yml
or pass --secrets.placeholders: every missing secret then stands in as a placeholder, is listed,
and everything else is checked as usual (run and once never do this)."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="monitord", description="Conferencing quality exporter for Prometheus.",
                                     formatter_class=_HelpFormatter)
    parser.add_argument("--version", action="version", version=f"monitord {__version__}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str, epilog: str | None = None) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, description=help_text, epilog=epilog,
                              formatter_class=_HelpFormatter if epilog is None else _EpilogFormatter)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--log.level", dest="log_level", default="info",
                       choices=["debug", "info", "warning", "error"], help="lowest level logged")
        p.add_argument("--log.format", dest="log_format", default="auto", choices=["auto", "json", "console"],
                       help="auto: JSON unless stderr is a terminal")

    def config_file(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config.file", dest="config_file", required=True, type=Path, metavar="PATH",
                       help="YAML configuration file (required; see deploy/config.example.yml)")

    def simulate_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument("--simulate.host", dest="sim_host", default="127.0.0.1", metavar="HOST",
                       help="address the simulators listen on")
        p.add_argument("--simulate.base-port", dest="sim_base_port", type=int, default=None, metavar="N",
                       help="first simulator port; the kinds take N..N+4 (default: 10530; 0 picks free ports)")

    def web_config_file(p: argparse.ArgumentParser, help_text: str) -> None:
        p.add_argument("--web.config.file", dest="web_config_file", default=None, type=Path, metavar="PATH",
                       help=help_text)

    def web_flags(p: argparse.ArgumentParser) -> None:
        web_config_file(p, "TLS, basic_auth_users and headers for every route, in the Prometheus exporter-toolkit "
                           "format (see deploy/web-config.example.yml); re-read when it or its certificates change")
        p.add_argument("--web.enable-lifecycle", dest="enable_lifecycle", action="store_true",
                       help="allow POST /-/reload (without it: 403, as in Prometheus)")
        p.add_argument("--web.read-header-timeout", dest="header_timeout", type=_duration, default="10s",
                       metavar="DURATION", help="close a connection whose request headers take longer")
        p.add_argument("--web.read-timeout", dest="body_timeout", type=_duration, default="30s",
                       metavar="DURATION", help="answer 408 to a request whose body takes longer")

    p = command("run", "run the daemon")
    config_file(p)
    p.add_argument("--web.listen-address", dest="listen_address", default=None, metavar="HOST:PORT",
                   help=f"HOST:PORT to serve /metrics on (default: web.listen_address, {DEFAULT_LISTEN_ADDRESS})")
    sharding.add_arguments(p)
    replica.add_arguments(p)
    web_flags(p)
    common(p)

    p = command("check-config", "validate a config file; exit 1 listing every problem", epilog=CHECK_CONFIG_HELP)
    config_file(p)
    web_config_file(p, "also validate this web config file (certificates and keys included)")
    p.add_argument("--secrets.placeholders", dest="secret_placeholders", action="store_true",
                   help="accept secrets whose environment variable or file is missing, and list them")
    common(p)

    p = command("once", "poll every target once and print the exposition; exit 1 naming each target that "
                        "could not be verified and why")
    config_file(p)
    p.add_argument("--openmetrics", action="store_true", help="print OpenMetrics instead of Prometheus text")
    sharding.add_arguments(p, peers=False)
    common(p)

    p = command("demo", "run the built-in simulators and the daemon polling them")
    p.add_argument("--web.listen-address", dest="listen_address", default=DEMO_LISTEN_ADDRESS, metavar="HOST:PORT",
                   help="HOST:PORT of the demo daemon's /metrics and status page")
    web_flags(p)
    simulate_flags(p)
    p.add_argument("--time-scale", dest="time_scale", type=_time_scale, default=1.0, metavar="F",
                   help="testing aid: divide every exporter and simulator timing by F (poll intervals and "
                        "timeouts, holds, cache retention, request budget windows and pacing, bans, simulated "
                        "outage timelines), so a test that shortens Prometheus' intervals and for: by F sees the "
                        "same world, F times faster (default: 1.0, production timings)")
    common(p)

    p = command("simulate", "run only the vendor simulators, to try a config against")
    simulate_flags(p)
    p.add_argument("--print-config", action="store_true",
                   help="print a ready config for simulators at these ports and exit (starts nothing)")
    common(p)

    p = command("catalog", "print the metric catalog (Markdown)")
    p.add_argument("--config-reference", action="store_true", help="print the config key reference instead")
    return parser


class _EpilogFormatter(_HelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Keeps the epilog's line breaks (its example command must stay one line)."""


def _duration(text: str) -> float:
    try:
        return _parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _surface(args: argparse.Namespace) -> Surface:
    """The HTTP surface from the web flags; ConfigError if the web config file is unusable."""
    from monitord import webconfig
    from monitord.web import Surface
    from monitord.webguard import Timeouts

    timeouts = Timeouts(header=args.header_timeout, body=args.body_timeout)
    if args.web_config_file is None:
        return Surface(enable_lifecycle=args.enable_lifecycle, timeouts=timeouts)
    log = logs.get("monitord.web")

    def failed(exc: ConfigError) -> None:
        log.error("web_config_reload_failed", file=exc.source, problems=exc.problems,
                  action="previous web configuration kept")

    watcher = webconfig.WebConfigWatcher(args.web_config_file, webconfig.load_web_config(args.web_config_file),
                                         on_error=failed)
    return Surface(security=watcher.get, enable_lifecycle=args.enable_lifecycle, timeouts=timeouts)


def _check_web_config(path: Path) -> bool:
    from monitord.webconfig import load_web_config

    try:
        security = load_web_config(path)
    except ConfigError as exc:
        _print_problems(exc)
        return False
    print(f"{path}: OK, TLS {'on' if security.tls else 'off'}, {len(security.users)} basic-auth user(s)")
    return True


def _time_scale(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value <= 1000:
        raise argparse.ArgumentTypeError(f"must be greater than 0 and at most 1000, got {text}")
    return value


def _configure_logs(args: argparse.Namespace) -> None:
    fmt = getattr(args, "log_format", "auto")
    logs.configure(getattr(args, "log_level", "info"), json=None if fmt == "auto" else fmt == "json")


def _print_problems(exc: ConfigError) -> None:
    print(f"{exc.source or 'config'}: {len(exc.problems)} problem(s):", file=sys.stderr)
    for problem in exc.problems:
        print(f"  {problem}", file=sys.stderr)


_SECRET_SOURCE_PROBLEM = ("environment variable", "secret file")


def cmd_check_config(args: argparse.Namespace) -> int:
    web_ok = args.web_config_file is None or _check_web_config(args.web_config_file)
    with contextlib.ExitStack() as stack:
        stood_in = stack.enter_context(secret_placeholders()) if args.secret_placeholders else []
        try:
            config = load(args.config_file)
        except ConfigError as exc:
            _print_problems(exc)
            if not args.secret_placeholders and any(w in p for p in exc.problems for w in _SECRET_SOURCE_PROBLEM):
                print("hint: to check everything but the secrets on a machine without them, add "
                      "--secrets.placeholders (see check-config --help)", file=sys.stderr)
            return 1
    if _refuse_shared_conflicts(config):
        return 1
    print(f"{args.config_file}: OK, {len(config.targets)} target(s)")
    if stood_in:
        print(f"not checked, placeholders used for {len(stood_in)} secret(s): {', '.join(sorted(set(stood_in)))}")
    return 0 if web_ok else 1


def _refuse_shared_conflicts(config: Config) -> bool:
    """Say so (and return True) when targets would share a vendor object with different settings."""
    from monitord.app import shared_conflicts

    problems = shared_conflicts(config)
    for problem in problems:
        print(problem, file=sys.stderr)
    return bool(problems)


def cmd_run(args: argparse.Namespace) -> int:
    from monitord.app import Daemon, serve
    from monitord.leader import LeaderElectionUnavailable

    try:
        config = load(args.config_file)
        surface = _surface(args)
        shard = sharding.spec_from_args(args)
    except ConfigError as exc:
        _print_problems(exc)
        return 1
    except ValueError as exc:  # ShardError and bad leader-election timings
        print(f"monitord: {exc}", file=sys.stderr)
        return 2
    if _refuse_shared_conflicts(config):
        return 1
    listen_address = args.listen_address or config.web.listen_address
    try:
        parse_listen_address(listen_address)
    except ValueError as exc:
        print(f"--web.listen-address: {exc}", file=sys.stderr)
        return 1

    async def main() -> int:
        daemon = Daemon(config, config_path=args.config_file, shard=shard)
        try:
            member = replica.Replica.from_args(daemon, args)
        except (LeaderElectionUnavailable, ValueError) as exc:
            print(f"monitord: {exc}", file=sys.stderr)
            return 2
        await serve(daemon, listen_address, replica=member, surface=surface)
        return 0

    try:
        return asyncio.run(main())
    except OSError as exc:  # the state directory or the port: say which, without a traceback
        print(f"monitord: cannot start: {logs.scrub(str(exc))}", file=sys.stderr)
        return 1


def cmd_once(args: argparse.Namespace) -> int:
    from monitord.app import Daemon
    from monitord.snapshot import OPENMETRICS, TEXT

    try:
        config = load(args.config_file)
        shard = sharding.spec_from_args(args)
    except ConfigError as exc:
        _print_problems(exc)
        return 1
    except ValueError as exc:
        print(f"monitord: {exc}", file=sys.stderr)
        return 2

    if _refuse_shared_conflicts(config):
        return 1

    async def main() -> int:
        daemon = Daemon(config, config_path=args.config_file, once=True, shard=shard)
        daemon.start(schedule=False)
        try:
            outcomes = await daemon.poll_all_once()
            exposition = daemon.store.render(OPENMETRICS if args.openmetrics else TEXT).decode()
            sent = dict(daemon.http.requests)
        finally:
            await daemon.close()
        sys.stdout.write(exposition)
        problems = []
        for name, outcome in sorted(outcomes.items()):
            if not outcome.ok:
                problems.append(f"target {name} failed: {outcome.detail}")
            elif not sent.get(name):
                # A poll that asked the vendor nothing proves nothing about URL or credentials.
                problems.append(f"target {name} not verified: its poll sent no request to the vendor "
                                "(nothing to query?)")
        for line in problems:
            print(redact.scrub(line), file=sys.stderr)
        return 1 if problems else 0

    return asyncio.run(main())


def cmd_simulate(args: argparse.Namespace) -> int:
    from monitord import simulators

    base_port = simulators.BASE_PORT if args.sim_base_port is None else args.sim_base_port
    if args.print_config:
        if base_port == 0:
            print("--print-config needs fixed ports: give --simulate.base-port N (N > 0)", file=sys.stderr)
            return 2
        sys.stdout.write(simulators.simulator_config(simulators.urls_at(args.sim_host, base_port)))
        return 0

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
    try:
        surface = _surface(args)
    except ConfigError as exc:
        _print_problems(exc)
        return 1

    async def main(state_dir: str) -> None:
        running = await simulators.start(args.sim_host, base_port, time_scale=args.time_scale)
        raw = simulators.demo_config(running.urls, time_scale=args.time_scale)
        raw["global"]["state_dir"] = state_dir
        config = parse(raw, source="built-in demo config")
        for kind, url in sorted(running.urls.items()):
            print(f"simulator {kind}: {url}", flush=True)

        def started(url: str) -> None:
            print(f"monitord demo: {len(config.targets)} simulated targets", flush=True)
            if args.time_scale != 1:
                print(f"time scale: every timing divided by {args.time_scale:g} (testing aid)", flush=True)
            print(f"metrics: {url}/metrics", flush=True)
            print(f"status page: {url}/", flush=True)

        daemon = Daemon(config)
        daemon.start()
        try:
            await serve(daemon, args.listen_address, started=started, surface=surface)
        finally:
            await running.close()

    # The demo's state (budget logs, event marks) is throwaway: removed on exit, however it ends.
    with tempfile.TemporaryDirectory(prefix="monitord-demo-") as state_dir:
        try:
            asyncio.run(main(state_dir))
        except KeyboardInterrupt:
            pass
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


def _scrubbing_excepthook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    """An uncaught exception's traceback, scrubbed: stderr is an output path like any other."""
    sys.stderr.write(redact.scrub("".join(traceback.format_exception(kind, exc, tb))))


def main(argv: Sequence[str] | None = None) -> int:
    sys.excepthook = _scrubbing_excepthook
    args = _parser().parse_args(argv)
    _configure_logs(args)
    return COMMANDS[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
