"""Production web server settings (gunicorn, sync workers).

call_state.htm carries its password in the query string, so the access log records the path
only (%(U)s), never the query (%(q)s) or the request line (%(r)s).
"""

import multiprocessing
import os

bind = os.environ.get("BIND", f"0.0.0.0:{os.environ.get('PORT', '8000')}")
# Sync workers: a Django request costs ~0.3 ms of CPU under WSGI; one worker per core keeps
# the CPU busy without thrashing (bench/README.md).
workers = int(os.environ.get("WEB_WORKERS") or multiprocessing.cpu_count())
worker_class = "sync"
timeout = 30
graceful_timeout = 10
keepalive = 5
accesslog = "-"
access_log_format = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms'
errorlog = "-"
logger_class = "pbx.gunicorn_logging.RedactingLogger"  # its error log hides query strings too
# No runtime control socket: nothing uses it, and it wants a writable home directory.
control_socket_disable = True
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
