"""Two processes never write one embedded database: the second gets a message naming the holder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from mmsearch.errors import DatabaseBusyError
from mmsearch.lock import LOCK_NAME, acquire_writer_lock

pytestmark = [pytest.mark.slow, pytest.mark.subprocess]  # make test runs them

HOLD = """import sys, time
from mmsearch.lock import acquire_writer_lock
acquire_writer_lock(sys.argv[1])
print("locked", flush=True)
time.sleep(120)
"""


def _index_in_other_process(db, photos, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mmsearch", "index", str(photos), "--db", str(db), "--json"],
                          capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})})


def test_second_writer_process_is_refused_and_may_write_after_the_holder_dies(tmp_path, photos):
    db = tmp_path / "db"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(db)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        proc = _index_in_other_process(db, photos)
        assert proc.returncode == 1
        err = proc.stderr.strip()
        assert err.startswith(f"mmsearch: error: the database {db} is in use by pid {holder.pid}")
        assert len(err.splitlines()) == 1 and "Traceback" not in err
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    acquire_writer_lock(db)  # the kernel released the dead holder's lock
    acquire_writer_lock(db)  # and it is re-entrant within one process (several engines, one database)


SERVE_WITH_PASSWORD = """import sys, time
sys.argv = ["/usr/bin/mmsearch", "serve", "--auth", "alice:s3cret", "--port", "7861"]
from mmsearch.lock import acquire_writer_lock
acquire_writer_lock(sys.argv_db if hasattr(sys, "argv_db") else DB)
print("locked", flush=True)
time.sleep(120)
"""


def test_the_lock_names_pid_and_command_only_and_only_its_owner_reads_it(tmp_path):
    db = tmp_path / "db"
    holder = subprocess.Popen([sys.executable, "-c", f"DB = {str(db)!r}\n" + SERVE_WITH_PASSWORD], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        lock = db / LOCK_NAME
        assert lock.read_text() == f"pid {holder.pid} (mmsearch serve)"
        assert oct(lock.stat().st_mode & 0o777) == oct(0o600)
        with pytest.raises(DatabaseBusyError) as refused:
            acquire_writer_lock(db)
        assert "s3cret" not in str(refused.value) and f"pid {holder.pid} (mmsearch serve)" in str(refused.value)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()


def test_a_writer_refused_by_a_serve_is_pointed_to_the_pages_index_panel(tmp_path, photos):
    db = tmp_path / "db"
    serve_like = HOLD.replace("acquire_writer_lock(sys.argv[1])", "db = sys.argv[1]; sys.argv = ['mmsearch', 'serve']; "
                              "acquire_writer_lock(db)")
    holder = subprocess.Popen([sys.executable, "-c", serve_like, str(db)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        err = _index_in_other_process(db, photos).stderr.strip()
        assert f"in use by pid {holder.pid} (mmsearch serve) (index from its page's Index panel instead; " in err
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
