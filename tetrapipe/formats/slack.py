"""Chat message format: one alert (or event) as a Slack / Mattermost incoming-webhook message.

A human reads it on a phone, so it is short: severity and rule first, the
rule's message, then where (namespace/pod, node) and when. ``{"text": ...}``
is the one payload every incoming-webhook flavour takes; the text uses the
``mrkdwn`` subset both Slack and Mattermost render, with ``&``, ``<`` and
``>`` escaped as Slack requires (they would otherwise start links and
mentions: a pod name must never page ``@channel``).
"""

from __future__ import annotations

from typing import Any

from tetrapipe.formats.values import event_time, is_alert

SEVERITY_ICONS = {
    "critical": ":rotating_light:",
    "high": ":red_circle:",
    "medium": ":large_orange_circle:",
    "low": ":large_yellow_circle:",
    "info": ":white_circle:",
}


def escape(text: Any) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _where(row: dict[str, Any]) -> str:
    pod = f"{row['namespace']}/{row.get('pod') or '?'}" if row.get("namespace") else "host process"
    node = f" on {row['node_name']}" if row.get("node_name") else ""
    return f"{pod}{node}, {event_time(row).strftime('%Y-%m-%d %H:%M:%S UTC')}"


def to_slack(row: dict[str, Any], *, include_raw: bool = False) -> dict[str, Any]:
    if is_alert(row):
        severity = (row.get("severity") or "info").lower()
        head = (
            f"{SEVERITY_ICONS.get(severity, '')} *{escape(severity.upper())}* "
            f"`{escape(row.get('rule_id') or '?')}` {escape(row.get('title') or '')}"
        ).strip()
        count = f" ({row['count']} events)" if (row.get("count") or 1) > 1 else ""
        lines = [head, escape(row.get("message") or ""), f"_{escape(_where(row))}{count}_"]
    else:
        what = " ".join(str(v) for v in (row.get("process_binary"), row.get("arguments")) if v)
        target = row.get("file_path") or (f"{row['daddr']}:{row.get('dport')}" if row.get("daddr") else "")
        lines = [
            f"`{escape(row.get('kind') or 'event')}` {escape(what)}" + (f" → {escape(target)}" if target else ""),
            f"_{escape(_where(row))}_",
        ]
    if include_raw and row.get("raw"):
        lines.append(f"```{escape(row['raw'])}```")
    return {"text": "\n".join(line for line in lines if line)}


__all__ = ["SEVERITY_ICONS", "escape", "to_slack"]
