"""A minimal source written against the vendor layer: the one README "Adding a source" shows,
run by tests/test_vendor_scope.py against a small vendor on 127.0.0.1.

The vendor: `GET {url}/rooms/{room}` with `Authorization: Bearer <api key>` answers
`{"participants": 3}`; 404 for an unknown room; 503 when it sheds load (its documentation says
not to retry that); it allows `requests_per_second` per API host, whatever the key.
"""

from __future__ import annotations

from collections import Counter
from typing import ClassVar, Literal

from pydantic import Field
from yarl import URL

from monitord import normalize as norm
from monitord.config import BaseURL, Secret, TargetConfig
from monitord.errors import PollError
from monitord.http import Response
from monitord.metrics import MetricDef
from monitord.snapshot import SnapshotBuilder
from monitord.sources.base import Source, SourceContext
from monitord.vendor import ITEM_REASONS, Request, RetryPolicy, Signer, fan_out


class RoomsConfig(TargetConfig):
    source: Literal["example_rooms"]
    url: BaseURL = Field(description="API base URL.")
    api_key: Secret = Field(description="Bearer key (use api_key_file or api_key_env).")
    rooms: tuple[str, ...] = Field(min_length=1, description="Rooms to watch.")
    requests_per_second: float = Field(5.0, gt=0, description="The vendor's limit per API host.")


PARTICIPANTS = MetricDef("rtc_example_room_participants", "gauge", "Participants in the room now.",
                         labels=("room",))
ROOM_ERRORS = MetricDef("monitord_example_rooms_room_errors", "counter",
                        "Rooms whose query failed while others answered, by reason.", labels=("room", "reason"),
                        health=True)


class RoomsSource(Source[RoomsConfig]):
    kind: ClassVar[str] = "example_rooms"
    Config: ClassVar[type[TargetConfig]] = RoomsConfig
    description: ClassVar[str] = "Example: participants per room"
    metrics: ClassVar[tuple[MetricDef, ...]] = (PARTICIPANTS, ROOM_ERRORS)
    PARSE_FIELDS: ClassVar[tuple[str, ...]] = ("participants",)

    @classmethod
    def budget_domain(cls, config: TargetConfig) -> str | None:
        # The rate is the API host's: its targets share one limiter (and one shard).
        assert isinstance(config, RoomsConfig)
        return URL(config.url).host

    def __init__(self, config: RoomsConfig, ctx: SourceContext) -> None:
        super().__init__(config, ctx)
        key = config.api_key.get_secret_value()
        self.api = self.caller(
            auth=Signer(lambda request: request.with_headers(Authorization=f"Bearer {key}")),
            retry=RetryPolicy(attempts=2, never_statuses=frozenset({503})),
            pacing=(self.shared.rate_limiter("requests", config.requests_per_second, 1.0),),
        )
        self.room_errors: Counter[tuple[str, str]] = Counter()

    async def poll(self, out: SnapshotBuilder) -> None:
        rooms = await fan_out(self.config.rooms, self._room, concurrency=4, noun="room")
        for room, count in rooms.results.items():
            out.add(PARTICIPANTS, count, "participants", room=room)
        for room, error in rooms.errors.items():
            self.room_errors[(room, error.reason)] += 1

    async def _room(self, room: str) -> float | norm.Missing:
        return await self.api.call(Request("GET", f"{self.config.url}/rooms/{room}"), _participants)

    def self_metrics(self, out: SnapshotBuilder) -> None:
        for room in self.config.rooms:
            for reason in ITEM_REASONS:  # what a room can fail with alone
                out.add(ROOM_ERRORS, float(self.room_errors[(room, reason)]), room=room, reason=reason)


def _participants(resp: Response) -> float | norm.Missing:
    if resp.status == 404:
        raise PollError("not_found", f"{resp.url}: no such room")
    resp.raise_for_status()
    return norm.non_negative(resp.json_object().get("participants"))
