"""Signed webhooks to a CRM, in the Standard Webhooks style.

Headers: webhook-id (the delivery id, stable across retries: the receiver's idempotency key),
webhook-timestamp (seconds), webhook-signature ("v1," + base64 HMAC-SHA256 over
"{id}.{timestamp}.{body}"). The secret may be given as "whsec_<base64>" or as plain text.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import httpx

from workers.retry import TemporaryFailure, http_failure


def secret_bytes(secret: str) -> bytes:
    if secret.startswith("whsec_"):
        return base64.b64decode(secret[len("whsec_") :])
    return secret.encode("utf-8")


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_bytes(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(secret: str, headers: dict[str, str], body: bytes, tolerance: int = 300) -> bool:
    """What a receiver does; used by our tests and offered to integrators."""
    webhook_id = headers.get("webhook-id", "")
    try:
        timestamp = int(headers.get("webhook-timestamp", ""))
    except ValueError:
        return False
    if abs(time.time() - timestamp) > tolerance:
        return False
    expected = sign(secret, webhook_id, timestamp, body)
    offered = headers.get("webhook-signature", "").split()
    return any(hmac.compare_digest(expected, candidate) for candidate in offered)


class WebhookClient:
    def __init__(self, timeout: float) -> None:
        self._client = httpx.Client(timeout=timeout, follow_redirects=False)

    def close(self) -> None:
        self._client.close()

    def post(self, url: str, secret: str, webhook_id: str, payload: dict[str, Any]) -> int:
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "webhook-id": webhook_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(secret, webhook_id, timestamp, body),
            "idempotency-key": webhook_id,
            "user-agent": "intake-webhook/1",
        }
        try:
            response = self._client.post(url, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            raise TemporaryFailure("webhook timed out") from exc
        except httpx.HTTPError as exc:
            raise TemporaryFailure(f"webhook connection failed: {type(exc).__name__}") from exc
        if 200 <= response.status_code < 300:
            return response.status_code
        raise http_failure(response.status_code, f"webhook answered {response.status_code}")
