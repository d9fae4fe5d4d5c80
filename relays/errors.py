"""The error a send raises, saying what to do next."""

from datetime import timedelta


class DeliveryError(Exception):
    """A send that did not work. By default it is worth retrying later.

    permanent: this delivery will never work (a bad request, an unknown user): give it up and
    go on with the next one. disable_relay: no delivery of this relay will work until an
    administrator fixes it (bad credentials, missing permission, a refused target): the
    relay is disabled with this message as the reason, its deliveries wait.
    retry_after: the platform said when to come back (429 Retry-After).
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        permanent: bool = False,
        disable_relay: bool = False,
        retry_after: timedelta | None = None,
    ):
        super().__init__(message)
        self.status_code = status_code
        self.permanent = permanent
        self.disable_relay = disable_relay
        self.retry_after = retry_after
