"""Jobs accepted while no worker runs survive a full server restart and then complete."""

from __future__ import annotations

from pathlib import Path

import httpx

from support.server import Server


def test_pending_jobs_survive_a_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    api_only = Server(data, workers=0).start()
    ids = [api_only.submit(seed=i) for i in range(3)]
    assert all(api_only.wait_for(i, ("pending",))["queue_position"] == n + 1 for n, i in enumerate(ids))
    api_only.stop()

    with_worker = Server(data, workers=1).start()
    try:
        finals = [with_worker.wait_for(i) for i in ids]
        assert [f["status"] for f in finals] == ["completed"] * 3
        assert [f["seed"] for f in finals] == [0, 1, 2]
        started = [f["started_at"] for f in finals]
        assert started == sorted(started)  # run in the order they were accepted
        assert httpx.get(f"{with_worker.url}/result/{ids[0]}").status_code == 200
    finally:
        with_worker.stop()
