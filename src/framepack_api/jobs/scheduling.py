"""The queue's scheduling settings as JobStore arguments: image jobs first, waiting jobs age.

Every JobStore that claims jobs or reports queue positions must get the same arguments, or the
positions the API shows would not be the order workers claim in.
"""

from __future__ import annotations

from typing import Any

from framepack_api.params import IMAGE_JOB_TYPES
from framepack_api.settings import Settings


def scheduling_options(settings: Settings) -> dict[str, Any]:
    return {"type_boost": {t: settings.image_priority_boost for t in IMAGE_JOB_TYPES},
            "aging_seconds": settings.aging_seconds_per_priority}
