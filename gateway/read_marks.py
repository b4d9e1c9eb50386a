"""Marking notifications read: a `notifications-read` event, keyed by user (the notifications consumer applies it in
order, and a replay keeps it: it is the source of truth for read state and grouping). Used by
`POST /api/notifications/read` and by the notifications page when it is viewed. The reader's unread set drops the
items at once as well, so the count they read next is already right (the consumer does the same when it applies the
event)."""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.errors import InvalidInput
from gateway.state import State
from schemas.events import NotificationsRead, NotificationsReadData
from store.notifications import items_key, unread_key


async def mark_read(state: State, user_id: str, up_to: str | None) -> None:
    """Publish the read mark: up to the item `up_to` (its time), or everything until now."""
    at = datetime.now(UTC)
    if up_to is not None:
        score = await state.redis.zscore(items_key(user_id), up_to)
        if score is None:
            raise InvalidInput("up_to is not one of your notifications.", field="up_to")
        at = datetime.fromtimestamp(score / 1000, UTC)
    data = NotificationsReadData(user_id=user_id, up_to=up_to, up_to_at=at)
    await state.publisher.publish(NotificationsRead(actor=user_id, payload=data))
    await state.redis.zremrangebyscore(unread_key(user_id), "-inf", int(at.timestamp() * 1000))
