"""The keyword index of a large library built from every record in a process of its own (``build_apart``).

Without its file (``keywords.npz`` gone, or written for another schema), the keyword index is built from
every record. Chroma's embedded engine keeps much of the memory it used to hand the records back: reading
a million records and keeping nothing left 2.86 GB of anonymous memory held, with nothing held on the Python
side, and ``malloc_trim`` gave back 0.3 GB of it. A child process that reads them, writes ``keywords.npz``
(and the entries file) and exits takes that memory with it; the process that asked reads the file.

Run as ``python -m mmsearch.search.keyword_child`` with a JSON ``Job`` on stdin.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

logger = logging.getLogger(__name__)

# Images from which an embedded store's build runs apart. Below it the child's start (a Python process that
# imports Chroma, ~1 s) is a large share of the build (100,000 records take ~20 s), and what it frees is small.
APART_FROM = 100_000


class Job(NamedTuple):
    """What the child builds: from the embedded database at ``db``, ``generation``'s images, into
    ``keywords`` tagged with ``key`` (``KeywordIndex.save``); the entries it reads go to ``entries``."""

    db: str
    generation: str
    keywords: str
    key: list[Any]
    entries: str | None


def build_apart(job: Job) -> bool:
    """Build the keyword index in a child process; whether it wrote ``job.keywords``. A child that fails is
    logged (its last line), and the caller builds in its own process."""
    started = time.monotonic()
    package_root = str(Path(__file__).resolve().parents[2])  # this mmsearch, installed or not
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    try:
        done = subprocess.run([sys.executable, "-m", __name__], input=json.dumps(job._asdict()), text=True,
                              capture_output=True, env=env, check=False)
    except OSError as exc:
        logger.warning("could not start a process to build the keyword index (%s); building it here", exc)
        return False
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        logger.warning("the keyword index's build in a child process failed (%s); building it here", last)
        return False
    told = _told(done.stdout)
    logger.info("keyword index of %s images built from every record in a child process in %.1f s (its peak RSS "
                "%.2f GiB)", told.get("records", "?"), time.monotonic() - started, told.get("peak_rss", 0) / 2**30)
    return True


def _told(stdout: str) -> dict[str, int]:
    """The child's last line: what it did (``main``); empty if it said nothing readable."""
    try:
        return dict(json.loads(stdout.strip().splitlines()[-1]))
    except (IndexError, ValueError, TypeError):
        return {}


def build(job: Job) -> int:
    """The child's work: read every record, write ``keywords.npz`` and the entries file. Returns the records
    indexed."""
    from ..store.client import Store
    from .keywords import KeywordIndex

    entries = job.entries
    store = Store(job.db, entries_file=(lambda _generation: Path(entries)) if entries else None).beside(job.generation)
    mark = store.write_mark()  # before the read: a write in progress is read again by the caller
    index = KeywordIndex.from_metadata(store.all_metadata(), through=mark.through)
    index.save(job.keywords, job.key)
    store.write_entries()  # those the read kept (none if their file was there)
    return len(index)


def main() -> int:
    """Entry point of the child: the job on stdin; what it did, one JSON line on stdout."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    records = build(Job(**json.loads(sys.stdin.read())))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    sys.stdout.write(json.dumps({"records": records, "peak_rss": peak}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
