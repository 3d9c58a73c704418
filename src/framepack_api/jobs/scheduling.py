"""The queue's scheduling settings as JobStore arguments: image jobs first, waiting jobs age.

Every JobStore that submits, claims or reports queue positions must get the same arguments, or the
positions the API shows would not be the order workers claim in.

The claim order key is computed once, at submit, and stored in ``jobs.claim_key`` (indexed with
status, created_at and id). It NEVER changes afterwards: not on claim, release, requeue by the
reaper, nor when the settings change (a new setting applies to jobs submitted after it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from framepack_api.params import IMAGE_JOB_TYPES, JobType
from framepack_api.settings import Settings


def scheduling_options(settings: Settings) -> dict[str, Any]:
    return {"type_boost": {t: settings.image_priority_boost for t in IMAGE_JOB_TYPES},
            "aging_seconds": settings.aging_seconds_per_priority}


def claim_key(priority: Any, job_type: Any, created_at: Any, *, type_boost: Mapping[JobType, int],
              aging_seconds: float) -> Any:
    """Claim order's sort key, smallest first; works on Python values and on SQL columns alike.

    Effective priority = priority + the type's boost (+ seconds waited / aging_seconds). Ordering
    by that at time `now` is ordering by ``created_at - effective * aging_seconds`` (now is common
    to all rows), a key that never changes: so it is stored at submit, claim and position agree at
    any instant, and a job waiting ``aging_seconds × difference`` longer overtakes one with higher
    priority, so none starves.
    """
    boost = {(t.value if isinstance(t, JobType) else str(t)): b for t, b in type_boost.items() if b}
    if isinstance(job_type, (str, JobType)):
        effective: Any = priority + boost.get(job_type.value if isinstance(job_type, JobType) else job_type, 0)
    elif boost:
        effective = priority + sa.case(boost, value=job_type, else_=0)
    else:
        effective = priority
    if aging_seconds > 0:
        return created_at - effective * aging_seconds
    return -effective
