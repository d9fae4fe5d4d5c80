import pytest
import redis
from django.conf import settings

from domains.credentials import issue_password
from domains.models import Domain, Extension
from presence.throttle import reset_limiter
from tests.servers import CeleryWorker, WebServer, server_env


@pytest.fixture(autouse=True)
def clean_redis():
    """Each test starts with no failure counters and an empty broker queue."""
    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    reset_limiter()
    yield
    reset_limiter()


@pytest.fixture
def domain(db) -> Domain:
    return Domain.objects.create(name="abc.com")


@pytest.fixture
def other_domain(db) -> Domain:
    return Domain.objects.create(name="other.example")


@pytest.fixture
def extension(domain) -> Extension:
    """Extension 123 of abc.com; its call-state password is on `.password`."""
    ext = Extension.objects.create(domain=domain, number="123", name="Ann", department="Sales")
    ext.password = issue_password(ext)
    return ext


@pytest.fixture
def web_server(transactional_db, tmp_path):
    server = WebServer(tmp_path / "web.log", server_env())
    yield server
    server.stop()


@pytest.fixture
def start_web_server(transactional_db, tmp_path):
    """A factory: `start_web_server(workers=1, REDIS_URL=...)` starts gunicorn with extra
    environment; every server it started is stopped after the test."""
    servers: list[WebServer] = []

    def start(workers: int = 2, **env: str) -> WebServer:
        log_path = tmp_path / f"web-{len(servers)}.log"
        server = WebServer(log_path, server_env(**env), workers=workers)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def celery_worker(transactional_db, tmp_path):
    worker = CeleryWorker(tmp_path / "worker.log", server_env())
    yield worker
    worker.stop()


@pytest.fixture
def people(domain, other_domain, extension):
    """Per DESIGN: an owner (admin of abc.com), a member (staff of abc.com, linked to
    extension 123) and an outsider (admin of other.example). Passwords are 'pw-<name>'."""
    from django.contrib.auth.models import User

    from domains.models import ADMIN, STAFF, Membership

    def user(name, **flags):
        account = User.objects.create_user(name, password=f"pw-{name}", **flags)
        return account

    owner = user("owner", is_staff=True)
    member = user("member")
    outsider = user("outsider", is_staff=True)
    Membership.objects.create(user=owner, domain=domain, role=ADMIN)
    Membership.objects.create(user=member, domain=domain, role=STAFF, extension=extension)
    Membership.objects.create(user=outsider, domain=other_domain, role=ADMIN)
    return {"owner": owner, "member": member, "outsider": outsider}


@pytest.fixture
def stream_server(transactional_db, tmp_path):
    from tests.servers import StreamServer

    server = StreamServer(tmp_path / "stream.log", server_env())
    yield server
    server.stop()
