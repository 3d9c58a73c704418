"""Which backend a worker runs, by settings. Imported lazily: backends pull in torch."""

from __future__ import annotations

from framepack_api.backends.base import Backend
from framepack_api.settings import Settings


def create_backend(settings: Settings) -> Backend:
    from framepack_api.backends.framepack.backend import FramepackBackend

    if "remote" in (settings.backend, settings.training_backend):
        from framepack_api.backends.remote import RemoteBackend, RoutingBackend

        return RoutingBackend(settings, RemoteBackend(settings), FramepackBackend)
    return FramepackBackend(settings)
