"""Domain errors. They know nothing of HTTP; ``api/app.py`` maps them to status codes in one place.

FramepackAPIError
├── InvalidInput        the client sent something unusable (field + problem)  -> 422 / 413
├── JobNotFound         no job with that id                                    -> 404
├── JobNotReady         the result is asked for before the job completed       -> 409
├── Conflict            an idempotency key reused with other parameters        -> 409
├── TooManyJobs         an admission limit on pending jobs is reached          -> 429 + Retry-After
├── Unavailable         the database or the model cannot serve now             -> 503
├── InsufficientStorage free disk space is below the configured floor           -> 507
└── FilesExpired        a finished job's files were removed by retention        -> 410

Worker-side signals (never reach HTTP):
JobCancelled  raised inside a backend when the job was cancelled mid-run.
LeaseLost     a fenced write changed no row: another worker owns the job now.
DiskFull      free space fell below the floor while a job ran: the job fails, nothing is published.
"""

from __future__ import annotations


class FramepackAPIError(Exception):
    """Base of every error this package raises on purpose."""


class InvalidInput(FramepackAPIError):
    def __init__(self, field: str, problem: str, *, too_large: bool = False, location: str = "body") -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem
        self.too_large = too_large
        self.location = location  # body | query | path | header: where the field was


class JobNotFound(FramepackAPIError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id} not found")
        self.job_id = job_id


class JobNotReady(FramepackAPIError):
    def __init__(self, job_id: str, status: str) -> None:
        super().__init__(f"job {job_id} is {status}, not completed")
        self.job_id = job_id
        self.status = status


class Conflict(FramepackAPIError):
    pass


class Unavailable(FramepackAPIError):
    pass


class TooManyJobs(FramepackAPIError):
    """A new job would exceed a limit on pending jobs (per credential, or for the whole server)."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class InsufficientStorage(FramepackAPIError):
    """Accepting the request would write to a disk that is (nearly) full; the message says why."""


class FilesExpired(FramepackAPIError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"the files of job {job_id} were removed by the retention policy")
        self.job_id = job_id


class JobCancelled(Exception):
    """Raised by a backend at a sampling step when the job has been cancelled."""


class LeaseLost(Exception):
    """A fenced write found the job no longer ours (reaped, or cancelled and taken by another)."""


class DiskFull(Exception):
    """Free space fell below the floor (or a write hit ENOSPC) while a job ran."""
