"""Post Markdown to rendered posts.

In: post-created (types post-created and post-edited).  Out: post-parsed (sanitized html, text, hashtags, mentions,
links; created_at = the post-created event's occurred_at; for an edit, the post's created_at it carries and
edited_at = the edit's occurred_at, so every read model keeps the newest version whatever order they come in).
Idempotency: rendering is a pure function of the body, so a redelivered post-created yields an equal post-parsed,
and the projections downstream upsert by post id.
"""

from __future__ import annotations

from consumers.runtime import Consumer, Context
from domain.markdown import RenderedPost, render_post
from schemas import topics
from schemas.events import PostCreated, PostParsed, PostParsedData

__all__ = ["consumer", "parsed", "render_post"]

consumer = Consumer("preparse", "Renders post Markdown once, so every projection replays the same safe HTML.")


def parsed(event: PostCreated, rendered: RenderedPost) -> PostParsed:
    """The post-parsed event for a post and its rendering (same post, same correlation id, caused by `event`)."""
    post = event.payload
    return PostParsed(
        correlation_id=event.correlation_id,
        causation_id=event.id,
        actor=event.actor,
        payload=PostParsedData(
            post_id=post.post_id,
            author_id=post.author_id,
            body=post.body,
            html=rendered.html,
            text=rendered.text,
            hashtags=rendered.hashtags,
            mentions=rendered.mentions,
            links=rendered.links,
            reply_to=post.reply_to,
            quote_of=post.quote_of,
            created_at=post.created_at or event.occurred_at,
            edited_at=event.edited_at,
        ),
    )


@consumer.on(topics.POST_CREATED, batch=True)
async def on_post_created(events: list[PostCreated], ctx: Context) -> None:
    """Render every post of the batch and publish the results (acknowledged by Kafka before the commit)."""
    await ctx.publisher.publish_many([parsed(event, render_post(event.payload.body)) for event in events])
