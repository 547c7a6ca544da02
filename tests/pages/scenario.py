"""A small, hand-counted data set sent through the real ingest API of the running server.

Days count back from today (UTC); expected figures below are counted by hand from `EVENTS`.
"""

import hashlib
import hmac
import json
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta


def user_hash(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


# (days ago, environment, user, org, event, path, how many)
EVENTS = [
    (0, "production", "u1", "org_big", "page_view", "/dashboard", 1),
    (1, "production", "u1", "org_big", "page_view", "/dashboard", 1),
    (2, "production", "u1", "org_big", "page_view", "/dashboard", 1),
    (1, "production", "u1", "org_big", "report_exported", "/reports", 1),
    (0, "production", "u2", "org_big", "page_view", "/dashboard", 1),
    (3, "production", "u2", "org_big", "page_view", "/dashboard", 1),
    (0, "production", "u2", "org_big", "page_view", "/settings", 1),
    (8, "production", "u3", "org_small", "page_view", "/settings", 1),
    (9, "production", "u3", "org_small", "page_view", "/settings", 1),
    (3, "production", "u4", "org_drop", "page_view", "/dashboard", 1),
    # org_drop was busy 35-46 days ago: a usage drop
    *[(35 + i, "production", "u4", "org_drop", "page_view", "/billing", 1) for i in range(12)],
    (0, "staging", "u1", "org_big", "page_view", "/dashboard", 2),
    (0, "staging", "u5", "org_stage", "signup_completed", "/welcome", 1),
]

# What the pages must show (hand-counted from EVENTS)
PRODUCTION_30D = {"events": 10, "users": 4, "orgs": 3}
PRODUCTION_7D = {"events": 8, "users": 3, "orgs": 2}
ALL_30D = {"events": 13, "users": 5, "orgs": 4}
STAGING_30D = {"events": 3, "users": 2, "orgs": 2}
PRODUCTION_90D_EVENTS = 22
PAGES_PRODUCTION_30D = {"/dashboard": (6, 3, 2), "/settings": (3, 2, 2), "/reports": (1, 1, 1)}  # views, users, orgs
EVENTS_BY_NAME_PRODUCTION_30D = {"page_view": 9, "report_exported": 1}
ORG_EVENTS_30D_ALL_ENVS = {"org_big": 9, "org_small": 2, "org_drop": 1, "org_stage": 1}


@dataclass
class Sender:
    base_url: str
    app_uuid: str
    secret: str

    def send(self, **fields: object) -> dict:
        """POST one signed event to /v1/events, as a customer's backend does."""
        body = json.dumps(fields, separators=(",", ":")).encode()
        signature = hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        request = urllib.request.Request(  # noqa: S310 - the test server on loopback
            f"{self.base_url}/v1/events",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "x-app-uuid": self.app_uuid, "x-signature": signature},
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            assert response.status == 202
            return json.loads(response.read())

    def send_scenario(self) -> int:
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        sent = 0
        for days, environment, user, org, event, path, count in EVENTS:
            for i in range(count):
                occurred = today - timedelta(days=days) + timedelta(minutes=1, seconds=sent + i)
                self.send(
                    event=event,
                    user_hash=user_hash(user),
                    customer_org_id=org,
                    path=path,
                    environment=environment,
                    ts_epoch=int(occurred.timestamp()),
                )
            sent += count
        return sent
