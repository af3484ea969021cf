"""Send Python logging records to faultline, without blocking or breaking the application.

Dependency-free (standard library only). Copy this file into your project, then:

    import logging
    from faultline_handler import FaultlineHandler

    handler = FaultlineHandler("http://127.0.0.1:8080", token=os.environ.get("FAULTLINE_TOKEN"))
    logging.getLogger().addHandler(handler)

Records at ERROR and above (configurable) are queued by `emit`, which never blocks and never
raises; a background thread posts them as NDJSON batches to faultline's `/api/ingest`, with the
formatted traceback of `exc_info`. A batch the server could not take for now (429, 503 or
another 5xx, a refused connection, a timeout) is sent again with backoff (the server's
`Retry-After` when it gives one) up to `max_attempts` times, while new records wait in the
bounded queue. Records dropped for any reason (queue full, attempts spent, refused by a 4xx,
still unsent when `close` gives up) are counted in `handler.dropped`; records the server found
invalid are counted in `handler.rejected`. Each record carries a random id, so a batch sent
twice is stored once. `close()` (also run by logging at interpreter exit) returns within
`close_timeout` seconds even when the server hangs.
"""

import json
import logging
import queue
import threading
import time
import traceback
import urllib.error
import urllib.request
import uuid

__all__ = ["FaultlineHandler"]


class FaultlineHandler(logging.Handler):
    """A logging handler that batches records to faultline in a background thread."""

    def __init__(
        self,
        url,
        token=None,
        level=logging.ERROR,
        batch_size=200,
        flush_interval=1.0,
        queue_size=10000,
        timeout=5.0,
        max_attempts=6,
        close_timeout=2.0,
    ):
        super().__init__(level)
        base = url.rstrip("/")
        self.url = base if base.endswith("/api/ingest") else base + "/api/ingest"
        self.token = token
        self.batch_size = max(1, int(batch_size))
        self.flush_interval = float(flush_interval)
        self.timeout = float(timeout)
        self.max_attempts = max(1, int(max_attempts))
        self.close_timeout = float(close_timeout)
        self.sent = 0
        self.dropped = 0
        self.rejected = 0
        self.retries = 0
        self.last_error = None
        self._queue = queue.Queue(maxsize=queue_size)
        self._busy = 0
        self._inflight = 0
        self._abandoned = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="faultline-handler", daemon=True)
        self._thread.start()

    # -- called by the application's threads ------------------------------------------------

    def emit(self, record):
        try:
            self._queue.put_nowait(self._to_dict(record))
        except queue.Full:
            with self._lock:
                self.dropped += 1
        except Exception:  # never raise into the application
            with self._lock:
                self.dropped += 1

    def flush(self, timeout=None):
        """Waits until queued records are sent (or dropped), at most `timeout` seconds (by
        default `close_timeout`). Called by `close`, and by logging at interpreter exit."""
        deadline = time.monotonic() + (self.close_timeout if timeout is None else timeout)
        while time.monotonic() < deadline:
            with self._lock:
                idle = self._queue.empty() and self._busy == 0
            if idle:
                return True
            time.sleep(0.01)
        return False

    def close(self):
        """Sends what is queued for at most `close_timeout` seconds in all; what is still unsent
        then is counted as dropped (a batch in flight too: its fate is unknown)."""
        deadline = time.monotonic() + self.close_timeout
        self.flush(self.close_timeout)
        self._stop.set()
        self._thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            if self._thread.is_alive() and not self._abandoned:
                self._abandoned = True
                self.dropped += self._inflight + self._queue.qsize()
        super().close()

    def _to_dict(self, record):
        item = {
            "id": uuid.uuid4().hex,
            "timestamp": record.created,
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pathname": record.pathname,
            "lineno": record.lineno,
            "function": record.funcName,
            "process": record.process,
            "thread": record.threadName,
        }
        if record.exc_info and record.exc_info[0] is not None:
            item["traceback"] = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        elif record.exc_text:
            item["traceback"] = record.exc_text
        if record.stack_info:
            item["stack_info"] = record.stack_info
        return item

    # -- the background thread -----------------------------------------------------------------

    def _run(self):
        while not self._abandoned and (not self._stop.is_set() or not self._queue.empty()):
            try:
                first = self._queue.get(timeout=self.flush_interval)
            except queue.Empty:
                continue
            batch = [first]
            while len(batch) < self.batch_size:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            with self._lock:
                self._busy += 1
                self._inflight = len(batch)
            try:
                self._deliver(batch)
            finally:
                with self._lock:
                    self._busy -= 1
                    self._inflight = 0

    def _deliver(self, batch):
        delay = 0.25
        for attempt in range(1, self.max_attempts + 1):
            retry_after = self._send(batch)
            if retry_after is None:
                return
            if attempt == self.max_attempts or self._stop.is_set() or self._abandoned:
                break
            with self._lock:
                self.retries += 1
            self._stop.wait(min(30.0, retry_after if retry_after > 0 else delay))
            delay = min(30.0, delay * 2)
        self._count(dropped=len(batch))

    def _count(self, sent=0, rejected=0, dropped=0):
        with self._lock:
            if self._abandoned:  # close() has counted this batch as dropped already
                return
            self.sent += sent
            self.rejected += rejected
            self.dropped += dropped

    def _send(self, batch):
        """Posts one batch. None when it is settled (sent, or refused for good and counted);
        otherwise the seconds to wait before trying again (0: use the backoff)."""
        body = "\n".join(json.dumps(r, default=str) for r in batch).encode("utf-8")
        headers = {"Content-Type": "application/x-ndjson"}
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                answer = json.loads(response.read() or b"{}")
            rejected = len(answer.get("rejected", []))
            self._count(sent=int(answer.get("accepted", len(batch) - rejected)), rejected=rejected)
            return None
        except urllib.error.HTTPError as e:
            self.last_error = "HTTP %d" % e.code
            if e.code == 429 or e.code >= 500:
                try:
                    return max(0.0, min(60.0, float(e.headers.get("Retry-After", "0"))))
                except (TypeError, ValueError):
                    return 0.0
            if e.code == 400:
                # Every record was invalid: the server says why, per record.
                self._count(rejected=len(batch))
            else:
                self._count(dropped=len(batch))
            return None
        except Exception as e:  # unreachable, timeout, bad answer: try again
            self.last_error = str(e)
            return 0.0
