"""A real Kamailio presence server and real SIP subscribers (SIPp) for the SIP lamp tests.

Nothing is installed here: `kamailio` and `sipp` come from Debian (`.ci/run` installs them).
Kamailio runs from deploy/kamailio/kamailio.cfg.in with free loopback ports; a watcher is SIPp
running tests/sip/blf_watch.xml, a BLF key subscribed to one extension, whose received NOTIFYs
are read back from SIPp's message trace.
"""

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import requests

from tests.servers import ROOT, free_port

TEMPLATE = ROOT / "deploy" / "kamailio" / "kamailio.cfg.in"
SCENARIOS = ROOT / "tests" / "sip"
DBTEXT = Path("/usr/share/kamailio/dbtext/kamailio")
SIP_DOMAIN = "example.test"
PACKAGES = {
    "dialog": "application/dialog-info+xml",
    "presence": "application/pidf+xml",
}


def modules_dir() -> str:
    found = sorted(Path("/usr/lib").glob("*/kamailio/modules/presence.so"))
    return str(found[0].parent) + "/" if found else "/usr/lib/x86_64-linux-gnu/kamailio/modules/"


def free_udp_port() -> int:
    while True:
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port


def render_config(directory: Path, sip_port: int, rpc_port: int) -> Path:
    values = {
        "ADDRESS": "127.0.0.1",
        "SIP_PORT": str(sip_port),
        "RPC_PORT": str(rpc_port),
        "SIP_DOMAIN": SIP_DOMAIN,
        "MODULES_DIR": modules_dir(),
        "DB_DIR": str(directory / "db"),
        "RUN_DIR": str(directory / "run"),
    }
    text = TEMPLATE.read_text()
    for name, value in values.items():
        text = text.replace(f"@{name}@", value)
    assert "@" not in re.sub(r"@[^@\s]*\.[^@\s]*|#.*", "", text), "unfilled placeholder"
    path = directory / "kamailio.cfg"
    path.write_text(text)
    return path


class Kamailio:
    """`kamailio -DD -E` on loopback in a directory of its own; restartable on the same ports."""

    def __init__(self, directory: Path):
        self.directory = directory
        (directory / "run").mkdir(parents=True, exist_ok=True)
        shutil.copytree(DBTEXT, directory / "db", dirs_exist_ok=True)
        self.sip_port = free_udp_port()
        self.rpc_port = free_port()
        self.config = render_config(directory, self.sip_port, self.rpc_port)
        self.rpc_url = f"http://127.0.0.1:{self.rpc_port}/RPC"
        self.process: subprocess.Popen | None = None
        self.starts = 0
        self.start()

    def start(self) -> None:
        self.starts += 1
        self._log = open(self.directory / f"kamailio-{self.starts}.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            ["kamailio", "-DD", "-E", "-f", str(self.config), "-Y", str(self.directory / "run")]
            + ["-m", "64", "-M", "8"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"kamailio exited:\n{self.output()}")
            with contextlib.suppress(requests.RequestException):
                body = {"jsonrpc": "2.0", "id": 1, "method": "core.version", "params": []}
                if requests.post(self.rpc_url, json=body, timeout=1).ok:
                    return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"kamailio did not answer its RPC:\n{self.output()}")

    def output(self) -> str:
        return "".join(
            path.read_text(errors="replace") for path in sorted(self.directory.glob("kam*.log"))
        )

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()

    def restart(self) -> None:
        self.stop()
        self.start()


@dataclass
class Notify:
    at: float  # time.time() of arrival, from SIPp's trace
    body: str

    @property
    def dialog_states(self) -> list[str]:
        return re.findall(r"<state[^>]*>([a-z]+)</state>", self.body)


class Watcher:
    """SIPp as a phone's BLF key on `extension`, for the `dialog` or `presence` package."""

    def __init__(self, kamailio: Kamailio, directory: Path, extension: str, event="dialog"):
        self.port = free_udp_port()
        self.messages = directory / f"sipp-{extension}-{event}-{self.port}.msg"
        self._log = open(directory / f"sipp-{self.port}.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            ["sipp", f"127.0.0.1:{kamailio.sip_port}", "-sf", str(SCENARIOS / "blf_watch.xml")]
            + ["-s", extension, "-key", "domain", SIP_DOMAIN, "-key", "event", event]
            + ["-key", "accept", PACKAGES[event], "-i", "127.0.0.1", "-p", str(self.port)]
            + ["-m", "1", "-nostdin", "-trace_msg", "-message_file", str(self.messages)],
            cwd=directory,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.wait_for(lambda n: True, timeout=10, what="the initial NOTIFY")

    def notifies(self) -> list[Notify]:
        if not self.messages.exists():
            return []
        found = []
        for block in self.messages.read_text(errors="replace").split("-" * 47 + " ")[1:]:
            stamp, _, rest = block.partition("\n")
            if "message received" not in rest.split("\n", 1)[0]:
                continue
            message = rest.split("\n", 2)[2] if rest.count("\n") >= 2 else ""
            if not message.lstrip().startswith("NOTIFY "):
                continue
            at = datetime.strptime(stamp.strip(), "%Y-%m-%d %H:%M:%S.%f").timestamp()
            found.append(Notify(at, message.split("\r\n\r\n", 1)[-1]))
        return found

    def wait_for(self, check, timeout: float = 15, what: str = "a NOTIFY", after: int = 0):
        """The first NOTIFY (from index `after` on) for which check(notify) is true."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sipp exited with {self.process.returncode}")
            for notify in self.notifies()[after:]:
                if check(notify):
                    return notify
            time.sleep(0.01)
        raise TimeoutError(f"{what}: not within {timeout} s; got {self.notifies()[after:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()


def lit(notify: Notify) -> bool:
    return "confirmed" in notify.dialog_states


def dark(notify: Notify) -> bool:
    states = notify.dialog_states
    return "confirmed" not in states and (not states or "terminated" in states)
