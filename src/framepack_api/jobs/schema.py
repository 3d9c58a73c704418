"""The job status enum and its transition table: the store's part of a job's life.

What a job *asks for* (job types and parameter models) lives in `framepack_api.params`, which the
API, the store, the backends and the UI all import; the backends import nothing from here.
"""

from __future__ import annotations

import enum

from framepack_api.params import IMAGE_JOB_TYPES, JobType

__all__ = ["IMAGE_JOB_TYPES", "TERMINAL", "TRANSITIONS", "JobStatus", "JobType", "can_transition"]


class JobStatus(str, enum.Enum):
    pending = "pending"
    processing = "processing"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({JobStatus.completed, JobStatus.failed, JobStatus.cancelled})

# Every status change in the store is one conditional UPDATE from one of these old statuses.
# processing -> pending is the reaper (lease expired, attempts left) or a worker's clean shutdown.
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.pending: frozenset({JobStatus.processing, JobStatus.cancelled, JobStatus.failed}),
    JobStatus.processing: frozenset(
        {JobStatus.completed, JobStatus.failed, JobStatus.cancelled, JobStatus.pending}
    ),
    JobStatus.completed: frozenset(),
    JobStatus.failed: frozenset(),
    JobStatus.cancelled: frozenset(),
}


def can_transition(old: JobStatus, new: JobStatus) -> bool:
    return new in TRANSITIONS[old]


