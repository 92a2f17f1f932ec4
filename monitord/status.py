"""The status page at `/` and the same facts as JSON at `/api/v1/status`.

A page an operator keeps open: per target its state and why, since when, how old its data is,
how long polls take, its series and parse errors; per vendor account the budget or ban it is
under; the configuration's reload state; where to look next (metrics, dashboards, runbooks).
Self-contained (inline CSS, no script, no external asset) so it works air-gapped, and it shows
no configuration value but names: error details go through the log scrubber first.
"""

from __future__ import annotations

import html
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from monitord import __version__, logs
from monitord.sources import REGISTRY

if TYPE_CHECKING:
    from monitord.app import Daemon
    from monitord.scheduler import TargetRuntime

RUNBOOKS_URL: Final = "https://github.com/monitord/monitord/blob/main/docs/runbooks.md"
# The Grafana dashboards shipped in dashboards/, by their fixed uids.
DASHBOARDS: Final = (
    ("monitord-overview", "Overview"),
    ("monitord-exporter", "Exporter health"),
    # Grafana uids take no underscore by convention here: huawei_rtc -> monitord-huawei-rtc.
    *((f"monitord-{kind.replace('_', '-')}", REGISTRY[kind].description.split(":")[0]) for kind in sorted(REGISTRY)),
)
REFRESH_SECONDS: Final = 15
# States, worst first: the order of the table.
STATES: Final = ("failing", "stale", "pending", "up")


def stale_after(rt: TargetRuntime) -> float:
    """Data older than this is stale although the target is not failing: two polls missed."""
    return 2 * rt.interval + rt.timeout


def _target(rt: TargetRuntime, now: float, series: int | None) -> dict[str, Any]:
    # The state is that of monitord_target_up: the newest poll that asked the vendor something
    # (a poll a vendor budget kept idle says nothing about the vendor).
    last = rt.last_real
    received = rt.data_time()
    age = None if received is None else max(0.0, now - received)
    # Stale means the vendor stopped answering successfully; sources that refresh some data less
    # often than they poll (a vendor budget) have older data without being stale.
    since_success = None if rt.last_success is None else now - rt.last_success
    if last is None:
        state = "pending"
    elif not last.ok:
        state = "failing"
    elif since_success is not None and since_success > stale_after(rt):
        state = "stale"
    else:
        state = "up"
    return {
        "name": rt.name,
        "source": rt.kind,
        "state": state,
        "reason": last.reason if last is not None and not last.ok else "",
        # The detail is the PollError's text, "reason: what happened"; the reason has its own field.
        "detail": logs.scrub(last.detail.removeprefix(f"{last.reason}: ")) if last is not None and not last.ok else "",
        "since": rt.state_since,
        "last_success": rt.last_success,
        "data_time": received,
        "data_age_seconds": age,
        "stale_after_seconds": stale_after(rt),
        "last_poll_at": rt.last_poll_at,
        "last_poll_duration_seconds": rt.last.duration if rt.last is not None else None,
        "interval_seconds": rt.interval,
        "timeout_seconds": rt.timeout,
        "series": series,
        "parse_errors": sum(rt.parse_errors.values()),
        "parse_error_fields": dict(sorted(rt.parse_errors.items())),
        "polls": rt.polls,
        "polls_skipped": rt.skipped,
        "poll_errors": dict(sorted((k, v) for k, v in rt.errors.items() if v)),
    }


def _accounts(runtimes: list[TargetRuntime], now: float) -> list[dict[str, Any]]:
    accounts: dict[tuple[str, str], dict[str, Any]] = {}
    for rt in runtimes:
        try:
            status = rt.source.account_status()
        except Exception:  # the page must render whatever one source does
            continue
        if status is None:
            continue
        entry = accounts.setdefault((rt.kind, status.account), {
            "source": rt.kind, **asdict(status), "targets": [], "notes": [],
        })
        entry.pop("note", None)
        entry["targets"].append(rt.name)
        if status.note:
            entry["notes"].append(f"{rt.name}: {status.note}")
        if status.used is not None:
            entry["used"] = max(entry["used"] or 0.0, status.used)
        if status.throttled_until is not None:
            entry["throttled_until"] = max(entry["throttled_until"] or 0.0, status.throttled_until)
    out = []
    for entry in accounts.values():
        until = entry["throttled_until"]
        entry["throttled"] = until is not None and until > now
        out.append(entry)
    return sorted(out, key=lambda a: (a["source"], a["account"]))


def facts(daemon: Daemon) -> dict[str, Any]:
    """Everything the page shows, as plain data (the JSON of /api/v1/status)."""
    now = daemon.clock()
    runtimes = sorted(daemon.scheduler.runtimes(), key=lambda r: r.name)
    targets = []
    for rt in runtimes:
        data = daemon.store.get(rt.data_key)
        targets.append(_target(rt, now, data.series if data is not None else None))
    targets.sort(key=lambda t: (STATES.index(t["state"]), t["name"]))
    summary = {"targets": len(targets), **{s: sum(1 for t in targets if t["state"] == s) for s in STATES}}
    return {
        "version": __version__,
        "generated_at": now,
        "summary": summary,
        "config": {
            "file": str(daemon.config_path) if daemon.config_path is not None else None,
            "last_reload_successful": daemon.reload_ok,
            "last_reload_success_time": daemon.reload_time,
        },
        "targets": targets,
        "accounts": _accounts(runtimes, now),
        "links": {
            "metrics": "metrics",
            "healthy": "-/healthy",
            "ready": "-/ready",
            "status_json": "api/v1/status",
            "runbooks": RUNBOOKS_URL,
            "dashboards": [{"uid": uid, "title": title} for uid, title in DASHBOARDS],
        },
    }


# ----------------------------------------------------------------------------------- HTML

def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    seconds = max(0.0, seconds)
    if seconds < 1:
        return "just now"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{int(seconds // size)}{unit}")
            seconds %= size
        if len(parts) == 2:
            break
    return " ".join(parts)


def _utc(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.1f} s" if seconds < 60 else _ago(seconds)


def _interval(seconds: float) -> str:
    return f"{seconds:g}s" if seconds < 60 or seconds % 60 else f"{seconds / 60:g}m"


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _when(ts: float | None, now: float, suffix: str = " ago") -> str:
    if ts is None:
        return '<span class="muted">never</span>'
    return f'<time datetime="{_e(_utc(ts))}" title="{_e(_utc(ts))}">{_e(_ago(now - ts))}{suffix}</time>'


def _target_row(t: dict[str, Any], now: float) -> str:
    state = t["state"]
    if state == "failing":
        why = (f'<a class="reason" href="{RUNBOOKS_URL}#monitordtargetdown">{_e(t["reason"])}</a>'
               f'<div class="detail">{_e(t["detail"])}</div>')
    elif state == "stale":
        why = (f'<a class="reason" href="{RUNBOOKS_URL}#monitorddatastale">no new data</a>'
               f'<div class="detail">no successful poll for over {_e(_ago(t["stale_after_seconds"]))} '
               f'(two intervals and a timeout)</div>')
    elif state == "pending":
        why = '<span class="muted">first poll running</span>'
    else:
        why = '<span class="muted">-</span>'
    errors = ", ".join(f"{_e(k)} {v}" for k, v in t["poll_errors"].items()) or "none"
    fields = ", ".join(f"{k} {v}" for k, v in t["parse_error_fields"].items())
    parse = (f'<span class="warn" title="{_e(fields)}">{t["parse_errors"]}</span>' if t["parse_errors"]
             else '<span class="muted">0</span>')
    series = "-" if t["series"] is None else str(t["series"])
    age_class = "age-bad" if state in ("failing", "stale") else ""
    return (
        f'<tr class="row-{state}" data-target="{_e(t["name"])}" data-state="{state}">'
        f'<td class="name">{_e(t["name"])}</td>'
        f'<td><span class="source">{_e(t["source"])}</span></td>'
        f'<td><span class="badge badge-{state}">{state}</span></td>'
        f'<td class="why">{why}</td>'
        f'<td>{_when(t["since"], now, "")}</td>'
        f'<td class="{age_class}">{_when(t["data_time"], now, "")}</td>'
        f'<td class="num">{_e(_duration(t["last_poll_duration_seconds"]))}</td>'
        f'<td class="num">{_e(_interval(t["interval_seconds"]))}</td>'
        f'<td class="num">{series}</td>'
        f'<td class="num">{parse}</td>'
        f'<td class="num" title="errors by reason: {errors}">{t["polls"]}'
        f'{" / " + str(sum(t["poll_errors"].values())) + " failed" if t["poll_errors"] else ""}</td>'
        "</tr>"
    )


def _account_row(a: dict[str, Any], now: float) -> str:
    if a["limit"] and a["used"] is not None:
        share = min(1.0, a["used"] / a["limit"])
        level = "bad" if share >= 0.95 else "warn" if share >= 0.75 else "ok"
        budget = (f'<div class="bar" title="{a["used"]:g} of {a["limit"]:g} {_e(a["window"])}">'
                  f'<div class="fill fill-{level}" style="width:{share * 100:.0f}%"></div></div>'
                  f'<span class="num">{a["used"]:g} / {a["limit"]:g}</span> {_e(a["window"])}')
    elif a["limit"]:
        budget = f'at most {a["limit"]:g} {_e(a["window"])}'
    else:
        budget = '<span class="muted">-</span>'
    if a["throttled"]:
        throttle = (f'<span class="badge badge-failing">throttled</span> until '
                    f'{_e(_utc(a["throttled_until"]))} ({_e(_ago(a["throttled_until"] - now))} left)')
    else:
        throttle = '<span class="badge badge-up">not throttled</span>'
    notes = "".join(f"<div>{_e(n)}</div>" for n in a["notes"])
    return (
        f'<tr class="{"row-failing" if a["throttled"] else ""}" data-account="{_e(a["account"])}">'
        f'<td><span class="source">{_e(a["source"])}</span></td>'
        f'<td class="name">{_e(a["account"])}<div class="detail">{_e(", ".join(a["targets"]))}</div></td>'
        f"<td>{budget}</td><td>{throttle}</td><td class=\"detail\">{notes}</td></tr>"
    )


CSS: Final = """
:root{--bg:#f4f6f8;--card:#fff;--ink:#1d2733;--muted:#6b7785;--line:#e3e8ee;--red:#b3261e;--red-bg:#fdecea;
--amber:#8a5300;--amber-bg:#fff4e0;--green:#1e7a3c;--green-bg:#e5f4ea;--grey-bg:#eceff3;--head:#1f2a37}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);
font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
header{background:var(--head);color:#fff;padding:14px 24px;display:flex;align-items:center;gap:24px;flex-wrap:wrap}
header h1{font-size:18px;margin:0;font-weight:600}
header .version{color:#aab6c4;font-weight:400;margin-left:6px}
header nav{margin-left:auto;display:flex;gap:16px}
header a{color:#cfe3ff;text-decoration:none}
header a:hover{text-decoration:underline}
main{padding:20px 24px;max-width:1500px}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin-bottom:20px}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:10px 16px;min-width:120px}
.card .big{font-size:26px;font-weight:600}
.card .label{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.card.failing{border-color:var(--red);background:var(--red-bg)}
.card.failing .big{color:var(--red)}
.card.stale{border-color:#e0a030;background:var(--amber-bg)}
.card.stale .big{color:var(--amber)}
.card.config-bad{border-color:var(--red);background:var(--red-bg)}
h2{font-size:15px;margin:22px 0 8px}
table{width:100%;border-collapse:collapse;background:var(--card);border:1px solid var(--line);border-radius:8px;
overflow:hidden}
th{text-align:left;font-weight:600;color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.03em;
background:#f9fafb;border-bottom:1px solid var(--line);padding:8px 10px;white-space:nowrap}
td{padding:8px 10px;border-bottom:1px solid var(--line);vertical-align:top}
tr:last-child td{border-bottom:0}
td.name{font-weight:600;white-space:nowrap}
td.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
tr.row-failing td{background:var(--red-bg)}
tr.row-failing td:first-child{box-shadow:inset 4px 0 0 var(--red)}
tr.row-stale td{background:var(--amber-bg)}
tr.row-stale td:first-child{box-shadow:inset 4px 0 0 #e0a030}
.badge{display:inline-block;padding:1px 9px;border-radius:10px;font-size:12px;font-weight:600}
.badge-up{background:var(--green-bg);color:var(--green)}
.badge-failing{background:var(--red);color:#fff}
.badge-stale{background:#e0a030;color:#fff}
.badge-pending{background:var(--grey-bg);color:var(--muted)}
.source{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px;background:var(--grey-bg);
padding:1px 6px;border-radius:4px}
.reason{color:var(--red);font-weight:600}
tr.row-stale .reason{color:var(--amber)}
.detail{color:var(--muted);font-size:12px;max-width:520px;overflow-wrap:anywhere}
.muted{color:var(--muted)}
.warn{color:var(--amber);font-weight:600}
.age-bad,.age-bad .muted{color:var(--red);font-weight:600}
.bar{display:inline-block;width:120px;height:8px;background:var(--grey-bg);border-radius:4px;overflow:hidden;
vertical-align:middle;margin-right:8px}
.fill{height:100%}
.fill-ok{background:#3b8f5a}.fill-warn{background:#e0a030}.fill-bad{background:var(--red)}
footer{color:var(--muted);padding:0 24px 24px;font-size:12px}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px}
ul.links{margin:4px 0 0;padding-left:18px}
main a{color:#1a5fb4}
"""


def render(f: dict[str, Any]) -> str:
    now = f["generated_at"]
    s = f["summary"]
    cfg = f["config"]
    cards = [
        f'<div class="card"><div class="big">{s["targets"]}</div><div class="label">targets</div></div>',
        f'<div class="card"><div class="big">{s["up"]}</div><div class="label">up</div></div>',
        f'<div class="card{" failing" if s["failing"] else ""}"><div class="big">{s["failing"]}</div>'
        '<div class="label">failing</div></div>',
        f'<div class="card{" stale" if s["stale"] else ""}"><div class="big">{s["stale"]}</div>'
        '<div class="label">stale</div></div>',
    ]
    if s["pending"]:
        cards.append(f'<div class="card"><div class="big">{s["pending"]}</div><div class="label">pending</div></div>')
    reload_state = "loaded" if cfg["last_reload_successful"] else "reload FAILED, previous config in force"
    cards.append(
        f'<div class="card{"" if cfg["last_reload_successful"] else " config-bad"}" id="config">'
        f'<div class="label">configuration</div><div>{_e(reload_state)} '
        f'{_when(cfg["last_reload_success_time"], now)}</div>'
        f'<div class="detail">{_e(cfg["file"] or "built-in (demo)")}</div></div>'
    )
    rows = "".join(_target_row(t, now) for t in f["targets"]) or (
        '<tr><td colspan="11" class="muted">No targets configured.</td></tr>')
    accounts = ""
    if f["accounts"]:
        accounts = (
            "<h2>Vendor accounts</h2><table id=\"accounts\"><thead><tr><th>Source</th><th>Account</th>"
            "<th>Budget used</th><th>Throttling</th><th>Notes</th></tr></thead><tbody>"
            + "".join(_account_row(a, now) for a in f["accounts"]) + "</tbody></table>"
        )
    dashboards = "".join(f"<li><code>{_e(d['uid'])}</code> {_e(d['title'])}</li>" for d in f["links"]["dashboards"])
    title = f"monitord: {s['failing']} failing" if s["failing"] else "monitord"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<meta http-equiv="refresh" content="{REFRESH_SECONDS}">
<title>{_e(title)}</title><style>{CSS}</style></head>
<body>
<header><h1>monitord<span class="version">{_e(f["version"])}</span></h1>
<span class="muted" style="color:#aab6c4">as of {_e(_utc(now))}, refreshes every {REFRESH_SECONDS} s</span>
<nav><a href="metrics">/metrics</a><a href="api/v1/status">status JSON</a><a href="-/ready">/-/ready</a>
<a href="{RUNBOOKS_URL}">runbooks</a></nav></header>
<main>
<div class="cards">{"".join(cards)}</div>
<h2>Targets</h2>
<table id="targets"><thead><tr><th>Target</th><th>Source</th><th>State</th><th>Reason</th><th>Since</th>
<th title="Age of the newest vendor data the target exposes">Data age</th>
<th>Last poll</th><th>Interval</th><th>Series</th><th>Parse errors</th><th>Polls</th></tr></thead>
<tbody>{rows}</tbody></table>
{accounts}
<h2>Where to look next</h2>
<table><tbody><tr><td style="width:50%"><strong>Grafana dashboards</strong> (by uid)<ul class="links">{dashboards}</ul>
</td><td><strong>Runbooks</strong>: <a href="{RUNBOOKS_URL}">{_e(RUNBOOKS_URL)}</a><br>
<strong>Metrics</strong>: <a href="metrics">/metrics</a> (cached; scrapes never call vendors)<br>
<strong>Health</strong>: <a href="-/healthy">/-/healthy</a>, <a href="-/ready">/-/ready</a><br>
<strong>This page as JSON</strong>: <a href="api/v1/status">/api/v1/status</a></td></tr></tbody></table>
</main>
<footer>Data age is how old the newest vendor data of a target is; a target is stale when its polls have not
succeeded for longer than two intervals and a timeout. Times are UTC; hover a relative time for the exact one.</footer>
</body></html>
"""


# ------------------------------------------------------------------------------- handlers

def _daemon(request: web.Request) -> Daemon:
    from monitord.web import DAEMON_KEY

    return request.app[DAEMON_KEY]


async def page(request: web.Request) -> web.Response:
    return web.Response(text=render(facts(_daemon(request))), content_type="text/html",
                        headers={"Cache-Control": "no-store"})


async def status_json(request: web.Request) -> web.Response:
    return web.json_response(facts(_daemon(request)), headers={"Cache-Control": "no-store"})
