"""Send Python logging records to faultline, without blocking or breaking the application.

Dependency-free (standard library only). Copy this file into your project, then:

    import logging
    from faultline_handler import FaultlineHandler

    handler = FaultlineHandler("http://127.0.0.1:8080", token=os.environ.get("FAULTLINE_TOKEN"))
    logging.getLogger().addHandler(handler)

Records at ERROR and above (configurable) are queued by `emit`, which never blocks and never
raises; a background thread posts them as NDJSON batches to faultline's `/api/ingest`, with the
formatted traceback of `exc_info`. When faultline is unreachable or the queue is full, records
are dropped and counted in `handler.dropped`. Each record carries a random id, so a batch sent
twice is stored once.
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
    ):
        super().__init__(level)
        base = url.rstrip("/")
        self.url = base if base.endswith("/api/ingest") else base + "/api/ingest"
        self.token = token
        self.batch_size = max(1, int(batch_size))
        self.flush_interval = float(flush_interval)
        self.timeout = float(timeout)
        self.sent = 0
        self.dropped = 0
        self.rejected = 0
        self.last_error = None
        self._queue = queue.Queue(maxsize=queue_size)
        self._busy = 0
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
        default the request timeout). Called by `close`, and by logging at interpreter exit."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while time.monotonic() < deadline:
            with self._lock:
                idle = self._queue.empty() and self._busy == 0
            if idle:
                return True
            time.sleep(0.01)
        return False

    def close(self):
        self.flush()
        self._stop.set()
        self._thread.join(self.timeout)
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
        while not self._stop.is_set() or not self._queue.empty():
            try:
                first = self._queue.get(timeout=self.flush_interval)
            except queue.Empty:
                continue
            with self._lock:
                self._busy += 1
            batch = [first]
            while len(batch) < self.batch_size:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._send(batch)
            finally:
                with self._lock:
                    self._busy -= 1

    def _send(self, batch):
        body = "\n".join(json.dumps(r, default=str) for r in batch).encode("utf-8")
        headers = {"Content-Type": "application/x-ndjson"}
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                answer = json.loads(response.read() or b"{}")
            with self._lock:
                self.sent += int(answer.get("accepted", len(batch)))
                self.rejected += len(answer.get("rejected", []))
        except urllib.error.HTTPError as e:
            with self._lock:
                self.dropped += len(batch)
                self.last_error = "HTTP %d" % e.code
        except Exception as e:  # unreachable, timeout, bad answer: drop and count
            with self._lock:
                self.dropped += len(batch)
                self.last_error = str(e)
