"""Every download route answers through here: a stored file, from whichever store holds it.

A local file is a FileResponse (Range, ETag and conditional requests as Starlette serves them).
An object is either streamed through the API, honouring a single-range ``Range`` header, or, with
``STORAGE_DOWNLOADS=redirect``, answered with a 307 to a presigned URL, so that the bytes go from
the store to the client directly (the store then answers Range itself).
"""

from __future__ import annotations

import re
from urllib.parse import quote

from fastapi import HTTPException, Request
from fastapi.responses import FileResponse, RedirectResponse, Response, StreamingResponse

from framepack_api.api.deps import AppState

_SINGLE_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def stored_file(state: AppState, request: Request, key: str, media_type: str, *, filename: str | None = None,
                no_store: bool = False) -> Response:
    storage = state.storage
    headers = {"Cache-Control": "no-store"} if no_store else {}
    path = storage.local_path(key)
    if path is not None:
        # Stat here, in the route: a file that retention removes meanwhile fails this request with
        # FileNotFoundError (the next one sees the expired row and answers 410).
        return FileResponse(path, media_type=media_type, filename=filename, headers=headers, stat_result=path.stat())
    if state.settings.storage_downloads == "redirect":
        url = storage.presigned_url(key, seconds=state.settings.s3_presign_seconds, filename=filename,
                                    media_type=media_type)
        return RedirectResponse(url, status_code=307, headers=headers)
    size = storage.size(key)
    if size is None:
        raise HTTPException(404, detail=f"stored file {key} is missing")
    headers["Accept-Ranges"] = "bytes"
    if filename:
        headers["Content-Disposition"] = f"attachment; filename*=utf-8''{quote(filename)}"
    wanted = byte_range(request.headers.get("range"), size)
    if isinstance(wanted, str):  # "unsatisfiable"
        return Response(status_code=416, headers={"Content-Range": f"bytes */{size}"})
    if wanted is None or size == 0:
        headers["Content-Length"] = str(size)
        body = storage.read_range(key, 0, size - 1) if size else iter([b""])
        return StreamingResponse(body, media_type=media_type, headers=headers)
    start, end = wanted
    headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    headers["Content-Length"] = str(end - start + 1)
    return StreamingResponse(storage.read_range(key, start, end), status_code=206, media_type=media_type,
                             headers=headers)


def byte_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """(start, end) inclusive for one satisfiable range; None to send the whole file (no header, a
    malformed one, or several ranges, which RFC 9110 lets a server ignore); "unsatisfiable" for 416."""
    if not header:
        return None
    match = _SINGLE_RANGE.match(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # the last N bytes
        length = int(last)
        if length == 0:
            return "unsatisfiable"
        return max(size - length, 0), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if last and int(last) < start:
        return None
    if start >= size:
        return "unsatisfiable"
    return start, end
