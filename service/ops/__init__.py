"""What `intake status`, `failed`, `retry`, `rotate-key` and `check-config` do, as plain functions.

Each takes an Engine and Settings, returns data (the CLI only formats it), and shows no personal
data unless asked: ids, kinds, states, counts, codes. SMTP replies can quote the address they
refuse, so reasons are shown with addresses masked unless `personal=True`.

One module per concern: `overview` (status), `repair` (failed, retry, publish, key rotation),
`config_check` (configuration report, test email), `common` (shared); the names are
re-exported here, so callers import from `service.ops`.
"""

from __future__ import annotations

from service.ops.common import BROKER_TIMEOUT_SECONDS, OpsError, mask_addresses
from service.ops.config_check import (
    ConfigReport,
    RouteRow,
    SentTestEmail,
    config_report,
    is_fictional_phone,
    send_test_email,
)
from service.ops.overview import (
    DELIVERY_STATES,
    LATENCY_WINDOW,
    REDIS_PRIORITY_SUFFIXES,
    Latency,
    StateCounts,
    Status,
    admissions_latency,
    queue_depths,
    state_counts,
    status,
)
from service.ops.repair import (
    ROTATE_BATCH,
    FailedDelivery,
    RetryResult,
    RotateResult,
    failed_deliveries,
    hurry_retrying,
    publish,
    retry_failed,
    rotate_keys,
)

__all__ = [
    "BROKER_TIMEOUT_SECONDS",
    "DELIVERY_STATES",
    "LATENCY_WINDOW",
    "REDIS_PRIORITY_SUFFIXES",
    "ROTATE_BATCH",
    "ConfigReport",
    "FailedDelivery",
    "Latency",
    "OpsError",
    "RetryResult",
    "RotateResult",
    "RouteRow",
    "SentTestEmail",
    "StateCounts",
    "Status",
    "admissions_latency",
    "config_report",
    "failed_deliveries",
    "hurry_retrying",
    "is_fictional_phone",
    "mask_addresses",
    "publish",
    "queue_depths",
    "retry_failed",
    "rotate_keys",
    "send_test_email",
    "state_counts",
    "status",
]
