"""A process that writes a history until it is killed: the other side of the crash tests.

    python history_writer.py DB write NAME   rows of session NAME, forever; prints "committed K"
                                            after each flush (K rows of it are committed)
    python history_writer.py DB purge        opens DB with max_age_s=3600, prints "deleting"
                                            when retention starts deleting, then idles
    python history_writer.py DB fsize        a disk that fills up and frees again (RLIMIT_FSIZE):
                                            prints the stats of each phase as JSON lines

Every row is a function of its hop (:func:`record`), so a reader can tell a whole row from a
torn one.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import signal
import sys
import time

from coaudio.serve import history_retention
from coaudio.serve.history import History

LABELS = ["rock", "jazz", "pop, live", "metal", "blues"]  # one with a comma: CSV must quote it
T0 = 1_700_000_000.0


def record(hop: int, t0: float = T0) -> dict:
    """The per-hop record of hop ``hop``: every field follows from it."""
    p = (hop % 100) / 100
    return {
        "hop": hop,
        "start_s": hop * 0.5,
        "end_s": hop * 0.5 + 0.96,
        "label": LABELS[hop % len(LABELS)],
        "confidence": p,
        "top": [{"label": LABELS[hop % len(LABELS)], "p": p}, {"label": "other", "p": round(1 - p, 6)}],
        "time": t0 + hop * 0.01,
        "latency_ms": 1.0,  # other keys are ignored
    }


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def write(db: str, name: str) -> None:
    history = History(db, flush_s=0.01, batch_rows=40)
    session = history.open_stream(name, "websocket", "test", 16_000, 1, "synth")
    say(f"session {session}")
    hop = 0
    while True:
        for _ in range(5):
            history.add(session, [record(h) for h in range(hop, hop + 7)])
            hop += 7
        history.flush()
        say(f"committed {hop}")


def purge(db: str) -> None:
    original = history_retention.Retention._delete

    def announced(self, *args):
        say("deleting")
        history_retention.Retention._delete = original
        return original(self, *args)

    history_retention.Retention._delete = announced
    History(db, max_age_s=3600)
    while True:
        time.sleep(1)


def fsize(db: str) -> None:
    """Fill the history up to a file size limit, then lift it: a disk full that clears."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills us at the limit
    history = History(db, flush_s=0.01, batch_rows=200)
    session = history.open_stream("full", "websocket", "test", 16_000, 1, "synth")
    history.add(session, [record(h) for h in range(100)])
    history.flush()
    say(json.dumps(history.stats()))
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    limit = max(os.path.getsize(db + suffix) for suffix in ("", "-wal"))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    for start in range(100, 20_100, 200):
        history.add(session, [record(h) for h in range(start, start + 200)])
    history.flush()
    say(json.dumps(history.stats()))
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    history.add(session, [record(h) for h in range(20_100, 20_150)])
    history.flush()
    say(json.dumps(history.stats()))
    history.close()


if __name__ == "__main__":
    db, mode = sys.argv[1], sys.argv[2]
    {"write": lambda: write(db, sys.argv[3]), "purge": lambda: purge(db), "fsize": lambda: fsize(db)}[mode]()
