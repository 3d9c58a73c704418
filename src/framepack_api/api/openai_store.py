"""The /v1/videos rows beside the jobs: what each OpenAI-style video was asked and promised.

Only jobs made through /v1/videos have a row, so retrieve and list show exactly those videos.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from framepack_api.jobs.db import read_tx, write_tx
from framepack_api.jobs.store import Job
from framepack_api.jobs.tables import jobs, openai_videos


@dataclass(frozen=True)
class VideoMeta:
    job_id: str
    model: str
    seconds: str
    size: str
    created_at: float


def record(engine: Engine, job: Job, *, model: str, seconds: str, size: str) -> VideoMeta:
    """Insert the row for a new job; for a job seen before (idempotent retry) return its row."""
    existing = get(engine, job.id)
    if existing is not None:
        return existing
    meta = VideoMeta(job.id, model, seconds, size, job.created_at)
    try:
        with write_tx(engine) as conn:
            conn.execute(openai_videos.insert().values(**meta.__dict__))
    except sa.exc.IntegrityError:  # the same idempotent request, twice at once
        found = get(engine, job.id)
        if found is None:
            raise
        return found
    return meta


def get(engine: Engine, job_id: str, owner: str | None = None) -> VideoMeta | None:
    """The video's row; None also when its job belongs to someone other than ``owner`` (None: anyone)."""
    query = sa.select(openai_videos).where(openai_videos.c.job_id == job_id)
    if owner is not None:
        query = query.where(openai_videos.c.job_id.in_(_owned(owner)))
    with read_tx(engine) as conn:
        row = conn.execute(query).first()
    return _meta(row) if row else None


def _owned(owner: str) -> Any:
    return sa.select(jobs.c.id).where(jobs.c.owner == owner)


def delete(engine: Engine, job_id: str) -> None:
    with write_tx(engine) as conn:
        conn.execute(openai_videos.delete().where(openai_videos.c.job_id == job_id))


def page(engine: Engine, *, after: str | None, limit: int, order: str,
         owner: str | None = None) -> tuple[list[tuple[VideoMeta, Job]], bool]:
    """One page of ``owner``'s videos (None: everyone's) in (created_at, job_id) order, after the
    video ``after``; and whether more follow.

    Raises KeyError when ``after`` names no video of ``owner``'s."""
    descending = order == "desc"
    keys = (openai_videos.c.created_at, openai_videos.c.job_id)
    where: Any = sa.true() if owner is None else openai_videos.c.job_id.in_(_owned(owner))
    if after:
        cursor = get(engine, after, owner)
        if cursor is None:
            raise KeyError(after)
        pair, bound = sa.tuple_(*keys), sa.tuple_(sa.literal(cursor.created_at), sa.literal(cursor.job_id))
        where = sa.and_(where, pair < bound if descending else pair > bound)
    order_by = [k.desc() for k in keys] if descending else list(keys)
    with read_tx(engine) as conn:
        rows = conn.execute(sa.select(openai_videos).where(where).order_by(*order_by).limit(limit + 1)).all()
        metas = [_meta(row) for row in rows[:limit]]
        found = conn.execute(sa.select(jobs).where(jobs.c.id.in_([m.job_id for m in metas]))).all()
    by_id = {job.id: job for job in map(Job.from_row, found)}
    return [(m, by_id[m.job_id]) for m in metas if m.job_id in by_id], len(rows) > limit


def _meta(row: Any) -> VideoMeta:
    m = row._mapping
    return VideoMeta(m["job_id"], m["model"], m["seconds"], m["size"], m["created_at"])
