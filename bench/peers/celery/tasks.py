"""The Celery app of the OwlClaw peer benchmark: Redis broker (DB 9) and Redis result backend
(DB 10), both dedicated to this benchmark and flushed before each run. Celery's defaults otherwise.
"""
import os
import time

from celery import Celery

REDIS = os.environ.get("OWLCLAW_PEER_REDIS", "redis://127.0.0.1:6379")
BROKER_DB = int(os.environ.get("OWLCLAW_PEER_BROKER_DB", "9"))
RESULT_DB = int(os.environ.get("OWLCLAW_PEER_RESULT_DB", "10"))

app = Celery("owlclaw_peer", broker=f"{REDIS}/{BROKER_DB}", backend=f"{REDIS}/{RESULT_DB}")
app.conf.broker_connection_retry_on_startup = True


@app.task(name="noop")
def noop(job):
    """The protocol's no-op; its result is its queue-to-start in µs (body start minus job["t"])."""
    return time.time_ns() // 1000 - job["t"]
