"""Marking notifications read: a `notifications-read` event (the notifications consumer applies it, and a replay
keeps it). Used by `POST /api/notifications/read` and by the notifications page when it is viewed."""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.errors import InvalidInput
from gateway.state import State
from schemas.events import NotificationsRead, NotificationsReadData
from store.notifications import items_key


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
