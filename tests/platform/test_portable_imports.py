"""The start path imports nothing POSIX-only, so the server starts on Windows (FramePack's one-click
package is Windows). CI runs Linux only: this simulates a Python without `fcntl`, `resource`, `pwd` and `grp`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = """
import sys
for posix_only in ("fcntl", "resource", "pwd", "grp"):
    sys.modules[posix_only] = None  # `import fcntl` now raises ImportError, as on Windows
import sqlalchemy as sa
from framepack_api import cli
from framepack_api.api.app import create_app
from framepack_api.jobs.db import create_engine, upgrade
from framepack_api.settings import Settings
from framepack_api.worker import runner, supervisor

settings = Settings(data_dir=sys.argv[1])
engine = create_engine(settings.resolved_database_url)
upgrade(engine)
with engine.connect() as conn:
    print("tables:", sorted(sa.inspect(conn).get_table_names()))
create_app(settings)
print("ok")
"""


def test_start_path_imports_and_migrates_without_fcntl(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "'jobs'" in done.stdout and done.stdout.rstrip().endswith("ok")
    assert any(tmp_path.glob("*.db"))
