"""Configuration of a huawei_rtc target."""

from __future__ import annotations

import hashlib
from typing import Literal

from pydantic import Field, model_validator

from monitord.config import BaseURL, Duration, Secret, StrictModel, TargetConfig

SdkType = Literal["native", "webrtc"]
SDK_TYPES: tuple[SdkType, ...] = ("native", "webrtc")
SECRET_HEADER = "X-Monitord-Secret"


class AppConfig(StrictModel):
    id: str = Field(min_length=1, description="SparkRTC app id (the `app` query parameter).")
    room_id: str | None = Field(None, description="Only this room (optional filter); the `room` label.")


class HuaweiRtcConfig(TargetConfig):
    source: Literal["huawei_rtc"]
    endpoint: BaseURL = Field("https://rtc-api.myhuaweicloud.com", description="SparkRTC API base URL.")
    iam_endpoint: BaseURL | None = Field(
        None, description="IAM base URL for token auth (default https://iam.{region}.myhuaweicloud.com)."
    )
    region: str = Field("cn-north-4", description="Region of the IAM endpoint when iam_endpoint is not set.")
    project_id: str = Field(min_length=1, description="Project id (path parameter and X-Project-Id).")
    auth: Literal["aksk", "token"] = Field("aksk", description="AK/SK signing (default) or IAM password token.")
    ak: Secret | None = Field(None, description="Access key id (ak_file / ak_env).")
    sk: Secret | None = Field(None, description="Secret access key (sk_file / sk_env).")
    iam_domain: str | None = Field(None, description="Account (domain) name of the IAM user, for auth=token.")
    iam_user: str | None = Field(None, description="IAM user name, for auth=token.")
    iam_password: Secret | None = Field(None, description="IAM user password (iam_password_file / _env).")
    token_refresh_before: Duration = Field(3600.0, description="Renew the 24 h IAM token this long before it expires.")
    apps: tuple[AppConfig, ...] = Field(min_length=1, description="Apps to watch, each with an optional room.")
    sdk_types: tuple[SdkType, ...] = Field(SDK_TYPES, description="sdk_type values to query.")
    dimensions: tuple[Literal["region", "access_net", "platform", "sdk"], ...] = Field(
        (), description="Online-user distributions to fetch (each costs one request per app per refresh)."
    )
    dimension_top: int = Field(20, ge=1, le=500, description="Keep only this many values per dimension.")
    rate_scale: Literal["percent", "ratio"] = Field(
        "ratio", description="How the API writes rates: 0.995 (ratio, as the vendor documents them) or 99.5 "
                             "(percent). Exposed as 0..1; a value above 1 under ratio is a parse error."
    )
    budget_per_minute: int = Field(30, ge=1, le=6000, description="Data requests per minute for the account.")
    budget_account: str | None = Field(
        None, description="Name of the shared budget (default: derived from the AK or IAM user and project)."
    )
    assume_budget_spent_at_start: bool = Field(
        True, description="With no persisted request log, assume the previous minute used the whole budget."
    )
    point_settle: Duration = Field(
        120.0, description="A per-minute point counts as complete once its minute ended this long ago."
    )
    max_age: Duration = Field(
        1200.0,
        description="Cache retention: drop a cached series not refreshed for this long. Keep it above the "
                    "data-stale alert threshold (900 s), so a series goes stale visibly before it disappears.",
    )
    max_refresh_period: Duration | None = Field(
        None, description="Slowest refresh the planner gives any call when the budget is tight (default: 10m, "
                          "or max_age when that is shorter); at most max_age."
    )
    abnormal_events: bool = Field(True, description="Count abnormal experience events.")
    events_interval: Duration = Field(60.0, description="How often the abnormal-event list is read.")
    events_overlap: Duration = Field(900.0, description="Each event window reaches back this far (late events).")
    events_page_size: int = Field(100, ge=1, le=1000, description="`limit` of each abnormal-event page.")
    event_distribution_window: Duration | None = Field(
        600.0, description="Window of the abnormal-event user distribution (null turns it off)."
    )
    failed_joins: bool = Field(
        True, description="Count users who failed to join (GET /v1/{project_id}/rtc/users?state=FAIL) by isp, "
                          "region, platform and sdk."
    )
    failed_joins_window: Duration = Field(
        300.0, description="Failed joins of this long a window (by join time) are counted, read once per window."
    )
    users_page_size: int = Field(100, ge=1, le=1000, description="`limit` of each user-list page.")
    users_max_pages: int = Field(
        10, ge=1, le=100, description="Pages read per failed-join window; beyond them the total is still exposed, "
                                      "the breakdown is left out and counted."
    )
    running_rooms: bool = Field(True, description="Count running rooms (GET /v1/{project_id}/rtc/rooms?state=RUNNING).")
    rooms_lookback: Duration = Field(
        86400.0, le=90 * 86400.0,
        description="Running rooms created this far back are counted (the API lists rooms by creation time; "
                    "at most its 90-day span)."
    )
    retry_attempts: int = Field(
        3, ge=1, le=6, description="Attempts per call for 408, 500, 502, 504 and connection errors (503 is never "
                                   "retried: the vendor advises against it)."
    )
    retry_base_delay: Duration = Field(0.5, description="First backoff delay (doubles, full jitter).")
    callback_secret: Secret | None = Field(
        None, description=f"Shared secret for POST .../record-events, in header {SECRET_HEADER} or ?secret= "
                          "of the callback URL."
    )
    callback_key: Secret | None = Field(
        None, description="The apps' recording-callback key (auth_key of PUT /v2/apps/{app_id}/record-callback): "
                          "callbacks must carry Huawei's X-Rtc-Signature made with it."
    )
    callback_max_skew: Duration = Field(
        300.0, description="A signed callback whose X-Rtc-Timestamp is further than this from now is refused "
                           "(stale); replays are refused within this window."
    )

    @model_validator(mode="after")
    def _retention(self) -> HuaweiRtcConfig:
        if self.max_refresh_period is not None and self.max_refresh_period > self.max_age:
            raise ValueError(
                f"max_refresh_period ({self.max_refresh_period:g}s) must not exceed max_age ({self.max_age:g}s), "
                "or a series would be dropped before its planned refresh"
            )
        return self

    @property
    def refresh_ceiling(self) -> float:
        return self.max_refresh_period or min(600.0, self.max_age)

    @model_validator(mode="after")
    def _credentials(self) -> HuaweiRtcConfig:
        if self.auth == "aksk" and (self.ak is None or self.sk is None):
            raise ValueError("auth aksk needs ak and sk (or ak_file/sk_file, ak_env/sk_env)")
        if self.auth == "token" and not (self.iam_domain and self.iam_user and self.iam_password):
            raise ValueError("auth token needs iam_domain, iam_user and iam_password")
        return self

    @property
    def iam_url(self) -> str:
        return self.iam_endpoint or f"https://iam.{self.region}.myhuaweicloud.com"

    def account_key(self) -> str:
        if self.budget_account:
            return self.budget_account
        # Huawei limits the account, not the project or the IAM user: an AK (or an IAM domain)
        # is the closest thing to the account we can see. Two AKs of one account cannot be told
        # apart: set the same budget_account on both. Hashed: the key names a state file.
        who = self.ak.get_secret_value() if self.auth == "aksk" and self.ak else f"domain:{self.iam_domain}"
        return hashlib.sha256(who.encode()).hexdigest()[:16]

    def token_key(self) -> str:
        """IAM tokens are per user and project-scoped: one cache per (domain, user, project)."""
        return f"{self.iam_domain}/{self.iam_user}/{self.project_id}"

