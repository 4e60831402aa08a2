"""The one client of alert webhooks: POST a JSON body, say whether a failure is worth a retry.

Generic receivers get the problem as JSON; Slack-compatible ones (Slack, Mattermost, Rocket.Chat,
Teams' Slack-style connectors) a ``{"text": ...}`` message."""

from __future__ import annotations

import requests

TIMEOUT = 10.0


class WebhookTransientError(Exception):
    """Worth retrying: a timeout, a refused connection, 429 or a 5xx."""


class WebhookPermanentError(Exception):
    """Not worth retrying: the receiver refused the message (another 4xx), or a redirect."""


def payload(*, kind: str, event: str, problem: dict) -> dict:
    """The body for a receiver of ``kind`` (``json`` or ``slack``) about ``problem`` being ``event``
    (``opened`` or ``cleared``)."""
    if kind == "slack":
        if event == "opened":
            return {"text": f":rotating_light: Rolegate: {problem['summary']}"}
        return {"text": f":white_check_mark: Rolegate: resolved: {problem['summary']}"}
    return {"event": event, **problem}


def post(url: str, body: dict) -> None:
    """POST ``body`` as JSON; raises one of the errors above unless the receiver answered 2xx."""
    try:
        response = requests.post(url, json=body, timeout=TIMEOUT, allow_redirects=False)
    except (requests.Timeout, requests.ConnectionError) as exc:
        raise WebhookTransientError(type(exc).__name__) from None
    except requests.RequestException as exc:
        raise WebhookPermanentError(type(exc).__name__) from None
    if 200 <= response.status_code < 300:
        return
    if response.status_code == 429 or response.status_code >= 500:
        raise WebhookTransientError(f"HTTP {response.status_code}")
    raise WebhookPermanentError(f"HTTP {response.status_code}")
