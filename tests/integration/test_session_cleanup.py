"""The end-of-run clean-up deletes what this run created, never what someone else created while it ran."""

from __future__ import annotations

from chirp.settings import Settings
from ops import _kafka
from producers.broker import ensure_topics
from schemas.events import new_id
from schemas.topics import Topic
from tests.scratch import scratch_id
from tests.session_state import kafka_names, remove_created


async def _commit_group(settings: Settings, group: str, topic: Topic) -> None:
    async with _kafka.reader(settings, group_id=group) as kafka:
        tps = await _kafka.partitions(kafka, [topic.name])
        kafka.assign(tps)
        await kafka.commit(await kafka.end_offsets(tps))


async def test_cleanup_deletes_only_names_of_this_run(settings: Settings) -> None:
    before = await kafka_names(settings)
    ours = Topic(f"cleanup-{scratch_id()}", key="post_id", partitions=1)
    theirs = Topic(f"someone-elses-{new_id().lower()}", key="post_id", partitions=1)
    await ensure_topics(settings, (ours, theirs))
    await _commit_group(settings, ours.name, ours)
    await _commit_group(settings, theirs.name, theirs)
    try:
        await remove_created(settings, before)
        after = await kafka_names(settings)
        assert theirs.name in after.topics and theirs.name in after.groups
        assert ours.name not in after.topics and ours.name not in after.groups
    finally:
        async with _kafka.admin(settings) as admin:
            await _kafka.delete_group(admin, theirs.name)
            await admin.delete_topics([theirs.name])
