"""gunicorn's error log without query strings.

call_state.htm carries a password in its query string. gunicorn writes the raw request line
into its error log when it rejects a malformed request or a request fails, so everything from
the first '?' or '&' of a logged line up to the next space or quote is replaced.
"""

import logging
import re

from gunicorn import glogging

_QUERY = re.compile(r"[?&][^\s'\"]*")
HIDDEN = "[query hidden]"


def redact(text: str) -> str:
    return _QUERY.sub(HIDDEN, text)


class RedactQueryFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = ()
        if record.exc_info:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class RedactingLogger(glogging.Logger):
    def setup(self, cfg) -> None:
        super().setup(cfg)
        self.error_log.addFilter(RedactQueryFilter())
