"""Huawei Cloud SparkRTC data APIs (Huawei Cloud "SparkRTC API Reference": 数据统计分析, 使用前必读 >
约束与限制, 如何调用API > 认证鉴权, 附录 > 状态码 / 接收增值(录制)事件回调通知内容).

The binding constraint is the vendor's limit of 30 data-statistics requests per minute per
account, shared by every call this source makes. So a poll does not fetch everything: a planner
picks the calls that are due, most valuable first, within the account's budget, and the rest of
the series keep their last good value (with its age exported) until their turn.

Modules: config (the target's settings), metrics (what is exposed), budget (a poll's allowance
within the account's budget, which like the IAM token is a daemon-scoped object of
monitord.vendor), planner (which calls a poll makes), client (signing or token, retries, error
bodies, through the vendor layer's Caller), series (realtime values and their cache), events
(abnormal events counted once), lists (users who failed to join, running rooms), callbacks
(recording callbacks and their signature), parsing (times, labels), signer (SDK-HMAC-SHA256),
source (the poll).
"""

from monitord.sources.huawei_rtc.config import SECRET_HEADER, AppConfig, HuaweiRtcConfig
from monitord.sources.huawei_rtc.source import HuaweiRtcSource

__all__ = ["SECRET_HEADER", "AppConfig", "HuaweiRtcConfig", "HuaweiRtcSource"]
