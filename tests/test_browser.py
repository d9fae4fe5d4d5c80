"""The board and the admin in real Chromium (DESIGN §5, §6), against gunicorn and the stream.

Each test drives a browser (Playwright, Debian's /usr/bin/chromium) against a real gunicorn
and a real uvicorn stream process on the test database, and waits on what the page shows.
"""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.contrib.auth.models import User
from django.test import Client
from playwright.sync_api import Browser, Page, expect, sync_playwright

from domains.credentials import issue_kiosk_token, revoke_kiosk_token
from domains.models import Extension
from presence.models import SOURCE_ADMIN, SOURCE_API, Call
from presence.service import CallReport, report_call, set_availability
from tests.servers import ROOT, StreamServer, WebServer, server_env

pytestmark = pytest.mark.server

CHROMIUM = "/usr/bin/chromium"
BOARD = "/board/abc.com/"
REMOTE = "4712345678"


@pytest.fixture(scope="module")
def browser():
    # Playwright's sync API keeps its event loop "running" in this thread, so Django would
    # refuse every ORM call of the test as if it came from async code. Allowed in this
    # module only (server_env() drops it: the servers keep the check).
    with pytest.MonkeyPatch.context() as patch, sync_playwright() as playwright:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def static_data_dir(tmp_path_factory) -> Path:
    """A DATA_DIR with collected static files: gunicorn runs with DEBUG=false, so the pages
    link the board's script and styles through the manifest, as in production."""
    data_dir = tmp_path_factory.mktemp("browser-data")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "pbx.settings", "DATA_DIR": str(data_dir)}
    command = [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"]
    subprocess.run(command, cwd=ROOT, env=env, check=True)
    return data_dir


class Servers:
    """gunicorn and the stream process, shared by the module's tests (each test still gets a
    fresh, committed database: starting both per test would double the module's run time)."""

    def __init__(self, logs: Path, data_dir: Path):
        self.logs = logs
        self.stream = StreamServer(logs / "stream.log", server_env())
        # The board page sends browsers to the stream at this address.
        env = server_env(BOARD_STREAM_URL=self.stream.url, DATA_DIR=str(data_dir))
        try:
            self.web = WebServer(logs / "web.log", env)
        except RuntimeError:
            self.stream.stop()
            raise

    def start_stream(self) -> None:
        """A new stream process on the old one's port, where the board pages point."""
        log = self.logs / f"stream-{time.monotonic_ns()}.log"
        self.stream = StreamServer(log, server_env(), port=self.stream.port)

    def stop(self) -> None:
        self.stream.stop()
        self.web.stop()


@pytest.fixture(scope="module")
def servers(django_db_setup, static_data_dir, tmp_path_factory):
    """Started once the test database exists (server_env() names it)."""
    servers = Servers(tmp_path_factory.mktemp("browser-servers"), static_data_dir)
    yield servers
    servers.stop()


@pytest.fixture
def web(servers: Servers, transactional_db) -> WebServer:
    """The web server; transactional_db commits each test's data, so the servers see it."""
    if servers.stream.process.poll() is not None:  # a test stopped it and failed
        servers.start_stream()
    return servers.web


@pytest.fixture
def context(browser: Browser, web: WebServer):
    context = browser.new_context(base_url=web.url)
    context.set_default_timeout(10_000)  # page loads; live updates are timed on their own
    yield context
    context.close()


@pytest.fixture
def page(context) -> Page:
    return context.new_page()


def server_password(user: User, password: str) -> None:
    """Give the user a password hash gunicorn can check.

    The test settings hash with MD5 for speed; the servers run the production settings, which
    know PBKDF2 only. Few iterations: the server upgrades the hash at the first login.
    """
    hasher = PBKDF2PasswordHasher()
    user.password = hasher.encode(password, hasher.salt(), iterations=1000)
    user.save(update_fields=["password"])


def log_in(page: Page, name: str, form: str = "/accounts/login/") -> None:
    """Log in through a login form (the board's or the admin's) with password pw-<name>."""
    password = f"pw-{name}"
    server_password(User.objects.get(username=name), password)
    page.goto(form)
    page.fill("#id_username", name)
    page.fill("#id_password", password)
    with page.expect_navigation(timeout=20_000):  # a full PBKDF2 on a busy machine
        page.click("[type=submit]")
    assert form not in page.url, f"{name} could not log in"


def sign_in(page: Page, web: WebServer, name: str) -> None:
    """Logged in without the login form (see log_in) and the server's slow password hash."""
    client = Client()
    client.force_login(User.objects.get(username=name))
    session = client.cookies[settings.SESSION_COOKIE_NAME]
    page.context.add_cookies([{"name": session.key, "value": session.value, "url": web.url}])


def open_board(page: Page, url: str = BOARD) -> None:
    """Open the board and wait until its stream answered, so live events reach it."""
    with page.expect_response(lambda r: "/stream/board" in r.url) as stream:
        response = page.goto(url)
    assert response.status == 200
    assert stream.value.status == 200


def tile(page: Page, extension: Extension):
    return page.locator(f'li.tile[data-id="{extension.pk}"]')


def report(web: WebServer, extension: Extension, **params) -> requests.Response:
    """call_state.htm as a provider sends it: busy with `number`, a clear without."""
    response = web.call_state(
        domain=extension.domain.name, user=extension.number, password=extension.password, **params
    )
    assert (response.status_code, response.text) == (200, "OK")
    return response


def wait_until(page: Page, predicate: str, arg=None, timeout: float = 5) -> float:
    """Seconds until the JavaScript `predicate(arg)` holds in the page, checked every 25 ms
    (expect() backs off to a second between checks, too coarse to time a live update)."""
    started = time.monotonic()
    page.wait_for_function(predicate, arg=arg, polling=25, timeout=timeout * 1000)
    return time.monotonic() - started


def wait_for_state(page: Page, extension: Extension, state: str, timeout: float = 5) -> float:
    """Seconds until the extension's tile shows `state`."""
    predicate = (
        '([id, state]) => document.querySelector(`li.tile[data-id="${id}"]`)'
        "?.dataset.state === state"
    )
    return wait_until(page, predicate, [extension.pk, state], timeout)


def next_text(page: Page, selector: str, text: str, timeout: float = 5) -> str:
    """The element's text once it is no longer `text`."""
    predicate = "([selector, text]) => document.querySelector(selector)?.textContent !== text"
    wait_until(page, predicate, [selector, text], timeout)
    return page.locator(selector).inner_text()


def banner_shown(page: Page, shown: bool, timeout: float = 5) -> None:
    predicate = "(shown) => document.getElementById('connection').hidden !== shown"
    wait_until(page, predicate, shown, timeout)


def test_superuser_creates_domain_and_extension_and_copies_the_password_once(page, web):
    User.objects.create_superuser("root")
    log_in(page, "root", form="/admin/login/")
    expect(page.locator("#user-tools")).to_contain_text("root")

    page.goto("/admin/domains/domain/add/")
    page.fill("#id_name", "new.example")
    page.click("input[name=_save]")
    expect(page.locator("#result_list")).to_contain_text("new.example")

    page.goto("/admin/domains/extension/add/")
    page.select_option("#id_domain", label="new.example")
    page.fill("#id_number", "200")
    page.fill("#id_name", "Bea")
    page.fill("#id_department", "Support")
    page.click("input[name=_save]")
    shown = page.locator("code.call-state-password")
    expect(shown).to_have_count(1)
    password = shown.inner_text().strip()
    assert len(password) >= 20

    answer = web.call_state(domain="new.example", user="200", password=password, number=REMOTE)
    assert (answer.status_code, answer.text) == (200, "OK")
    assert Call.objects.filter(extension__number="200", ended_at__isnull=True).count() == 1

    extension = Extension.objects.get(domain__name="new.example", number="200")
    response = page.goto(f"/admin/domains/extension/{extension.pk}/change/")
    assert response.status == 200
    expect(page.locator("#id_name")).to_have_value("Bea")
    assert password not in page.content()


def test_member_sees_a_call_within_a_second_with_a_ticking_timer(page, web, people, extension):
    log_in(page, "member")
    open_board(page)
    ann = tile(page, extension)
    expect(ann).to_have_attribute("data-state", "available")

    report(web, extension, number=REMOTE)
    assert wait_for_state(page, extension, "on_call", timeout=2) < 1.0
    expect(ann.locator(".label")).to_have_text("On the phone")
    expect(ann.locator(".remote")).to_have_text("External call")
    assert REMOTE not in page.content()

    timer = f'li.tile[data-id="{extension.pk}"] time.timer'
    first = page.locator(timer).inner_text()
    assert re.fullmatch(r"0:0\d", first), first
    second = next_text(page, timer, first, timeout=2.5)
    third = next_text(page, timer, second, timeout=2.5)
    assert int(first[-2:]) < int(second[-2:]) < int(third[-2:])

    report(web, extension)
    assert wait_for_state(page, extension, "available", timeout=2) < 1.0
    expect(ann.locator(".label")).to_have_text("Available")
    expect(ann.locator("time.timer")).to_have_count(0)


def test_board_shows_reconnecting_and_catches_up_after_the_stream_restarts(
    page, web, servers, people, extension
):
    sign_in(page, web, "member")
    open_board(page)
    banner = page.locator("#connection")
    expect(banner).to_be_hidden()

    servers.stream.stop()
    banner_shown(page, True, timeout=2)
    expect(banner).to_contain_text("Reconnecting")
    report(web, extension, number=REMOTE)  # while the board cannot hear about it
    expect(tile(page, extension)).to_have_attribute("data-state", "available")

    servers.start_stream()
    # The browser retries every 2 s (the stream's `retry`), then resyncs from a snapshot.
    banner_shown(page, False, timeout=5)
    wait_for_state(page, extension, "on_call", timeout=1)
    expect(tile(page, extension).locator(".label")).to_have_text("On the phone")


def test_outsider_sees_no_board_and_no_admin_objects_of_another_tenant(page, people):
    log_in(page, "outsider")
    assert page.goto(BOARD).status == 404
    assert page.goto("/board/other.example/").status == 200

    response = page.goto("/admin/domains/domain/")
    assert response.status == 200
    listed = page.locator("#result_list")
    expect(listed).to_contain_text("other.example")
    expect(listed).not_to_contain_text("abc.com")
    assert page.goto("/admin/domains/extension/?q=123").status == 200
    expect(page.locator("#changelist")).not_to_contain_text("abc.com")


def test_kiosk_link_shows_a_live_wall_until_revoked(page, web, domain, extension):
    token = issue_kiosk_token(domain)
    open_board(page, f"{BOARD}?kiosk={token}")
    expect(page.locator("body")).to_have_class("wall")
    expect(tile(page, extension)).to_be_visible()
    expect(page.locator("form.me")).to_have_count(0)
    expect(page.get_by_text("My status")).to_have_count(0)

    report(web, extension, number=REMOTE)
    assert wait_for_state(page, extension, "on_call", timeout=2) < 1.0
    expect(tile(page, extension).locator(".remote")).to_have_text("External call")

    revoke_kiosk_token(domain)
    banner_shown(page, True, timeout=5)
    expect(page.locator("#connection")).to_contain_text("switched off")
    assert page.reload().status == 403


def test_expired_call_leaves_the_open_board_without_the_sweep(page, web, people, extension):
    sign_in(page, web, "member")
    open_board(page)
    sent = time.monotonic()
    report(web, extension, number=REMOTE, expires=2)
    wait_for_state(page, extension, "on_call", timeout=1)
    wait_for_state(page, extension, "available", timeout=4)
    assert 1.9 < time.monotonic() - sent < 4
    # No worker runs here: the board let the call go by itself, the server still has it.
    assert Call.objects.get(extension=extension).ended_at is None


def test_board_is_complete_without_javascript(browser, web, people, domain, extension):
    report_call(extension, CallReport(busy=True, number=REMOTE), SOURCE_API)
    bob = Extension.objects.create(domain=domain, number="200", name="Bob", department="Support")
    set_availability(bob, availability="dnd", note="In a meeting", source=SOURCE_ADMIN)

    context = browser.new_context(base_url=web.url, java_script_enabled=False)
    try:
        page = context.new_page()
        sign_in(page, web, "member")
        assert page.goto(BOARD).status == 200
        expect(tile(page, extension)).to_have_attribute("data-state", "on_call")
        expect(tile(page, extension).locator(".label")).to_have_text("On the phone")
        expect(tile(page, extension).locator(".remote")).to_have_text("External call")
        timer = tile(page, extension).locator("time.timer")
        expect(timer).to_have_text(re.compile(r"^0:0\d$"))  # rendered by the server
        first = timer.inner_text()
        page.wait_for_timeout(1500)
        assert timer.inner_text() == first  # and not ticking: no script ran
        expect(tile(page, bob)).to_have_attribute("data-state", "dnd")
        expect(tile(page, bob)).to_contain_text("Do not disturb")
        expect(tile(page, bob).locator(".note")).to_have_text("In a meeting")
        expect(page.locator('[data-count="on_call"]')).to_have_text("1")
        expect(page.locator("section.department h2")).to_have_text(["Sales", "Support"])
    finally:
        context.close()
