"""What an AVD server has left to give: licence capacity, SIP gateways, watched recordings.

nice2meet AVD server API (`sdkapi/v2`): "[licence] 获取许可信息" (`/app/get_licence_info`:
`active_usernum`, `max_users`), "[sip/gate] 获取sip网关列表" (`/sip/gate/list`: `sip_gates[]` with
`id`, `name`, `status` "0"/"1", `url`), "查询录制状态" (`/room/record/status?record_id=`:
`record_status` 0..4), and the error-code table's [licence], [sip/gate] and [transfer] sections.

The vendor's labels for `record_status` and for a gateway's `status` survive only in a garbled
copy of the document; the readings below are the likely ones and stay configurable
(`record_states`, `sip_gateway_up_values` / `sip_gateway_down_values`), so a value read the
other way is a parse error, never a silently wrong state.
"""

from __future__ import annotations

from typing import Any, Final, Literal

from monitord import normalize as norm
from monitord.errors import PollError
from monitord.metrics import MetricDef
from monitord.snapshot import SnapshotBuilder

# Error codes of the vendor's table. A server without licence data (a cloud tenant, a site not
# yet licensed) answers one of the first three: no series, not a failed poll.
NO_COMPANY_INFO: Final = 40070      # "no company info in this site"
NO_SITE_LICENCE: Final = 40071      # "no site licence set"
NO_LICENCE_INFO: Final = 40072      # "no licence info"
LICENCE_ABSENT: Final = frozenset({NO_COMPANY_INFO, NO_SITE_LICENCE, NO_LICENCE_INFO})
NO_SIP_GATE_SET: Final = 40023      # "no sip gate set": no gateway configured, 0 gateways
NO_SUCH_RECORD_ID: Final = 40090    # "no such record_id" (room/record/status)

RecordState = Literal["not_started", "preparing", "recording", "paused", "stopped", "failed"]
RECORD_STATES: Final[dict[int, RecordState]] = {
    0: "not_started", 1: "preparing", 2: "recording", 3: "paused", 4: "stopped",
}
# A gateway's name is set by whoever configured it: bounded so a long one cannot bloat series.
MAX_GATEWAY_NAME: Final = 64

LICENCE_MAX_USERS = MetricDef("rtc_avd_licence_users_max", "gauge",
                              "Users the server's licence allows at once (get_licence_info max_users).")
LICENCE_ACTIVE_USERS = MetricDef("rtc_avd_licence_users_active", "gauge",
                                 "Users counted against the licence now (get_licence_info active_usernum).")
SIP_GATEWAYS = MetricDef("rtc_avd_sip_gateways", "gauge", "SIP gateways configured on the server (sip/gate/list).")
SIP_GATEWAY_UP = MetricDef(
    "rtc_avd_sip_gateway_up", "gauge",
    "1 if the SIP gateway's status is one of sip_gateway_up_values, 0 if one of sip_gateway_down_values.",
    labels=("gateway", "gateway_name"))
RECORD_KNOWN = MetricDef("rtc_avd_record_known", "gauge",
                         "1 if the server knows the watched record id, 0 if it answers 'no such record_id'.",
                         labels=("record",))
RECORD_STATUS = MetricDef("rtc_avd_record_status", "stateset",
                          "State of the watched recording (room/record/status record_status, read by record_states).",
                          labels=("record",))

METRICS: Final = (LICENCE_MAX_USERS, LICENCE_ACTIVE_USERS, SIP_GATEWAYS, SIP_GATEWAY_UP, RECORD_KNOWN,
                  RECORD_STATUS)
PARSE_FIELDS: Final = ("active_usernum", "max_users", "record_status", "sip_gates[]", "sip_gates[].id",
                       "sip_gates[].status")


def licence(answer: dict[str, Any], out: SnapshotBuilder) -> None:
    out.add(LICENCE_MAX_USERS, norm.non_negative(answer.get("max_users")), "max_users")
    out.add(LICENCE_ACTIVE_USERS, norm.non_negative(answer.get("active_usernum")), "active_usernum")


def sip_gateways(answer: dict[str, Any] | None, up_values: tuple[str, ...], down_values: tuple[str, ...],
                 out: SnapshotBuilder) -> None:
    """`answer` None: the server has no gateway set (40023)."""
    gates = [] if answer is None else answer.get("sip_gates")
    if gates is None:
        gates = []
    if not isinstance(gates, list):
        raise PollError("bad_response", f"sip/gate/list: sip_gates is a {type(gates).__name__}, not a list")
    out.add(SIP_GATEWAYS, float(len(gates)))
    for gate in gates:
        if not isinstance(gate, dict):
            out.add(SIP_GATEWAY_UP, norm.INVALID, "sip_gates[]")
            continue
        gate_id = _id(gate.get("id"))
        if not gate_id:
            out.add(SIP_GATEWAY_UP, norm.INVALID, "sip_gates[].id")
            continue
        name = gate.get("name")
        labels = {"gateway": gate_id, "gateway_name": name.strip()[:MAX_GATEWAY_NAME] if isinstance(name, str) else ""}
        status = gate.get("status")
        if status is None:
            continue  # servers before the field was added (2024-11) do not say
        text = _id(status)
        value: float | norm.Missing = (1.0 if text in up_values else 0.0 if text in down_values else norm.INVALID)
        out.add(SIP_GATEWAY_UP, value, "sip_gates[].status", **labels)


def record_status(record: str, answer: dict[str, Any] | None, states: dict[int, RecordState],
                  out: SnapshotBuilder) -> None:
    """`answer` None: the server does not know the record id (40090)."""
    out.add(RECORD_KNOWN, 0.0 if answer is None else 1.0, record=record)
    if answer is None:
        return
    code = norm.number(answer.get("record_status"))
    if code is norm.ABSENT:
        return
    state = states.get(int(code)) if isinstance(code, float) and code.is_integer() else None
    if state is None:
        out.add(RECORD_STATUS, norm.INVALID, "record_status")
        return
    out.state_set(RECORD_STATUS, sorted(set(states.values())), state, record=record)


def _id(value: Any) -> str:
    """Ids and status flags arrive as numbers or strings ("id": 2, "status": "1")."""
    if isinstance(value, bool) or value is None:
        return ""
    return str(value).strip() if isinstance(value, int | str) else ""
