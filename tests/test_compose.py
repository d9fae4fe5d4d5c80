"""docker-compose.yml and the Dockerfile, checked without Docker.

Docker cannot run on the development machines, so these tests read the two files and check
what a wrong edit would break: the services of the production shape exist and are health
checked, every command names a file, module or management command that is in the image, the
environment holds only settings the code reads, the secrets must be given, and the health checks
themselves work against a real gunicorn and a real Celery worker + beat.
"""

import ast
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from functools import cache
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

import pytest
import yaml
from django.core.management import get_commands

from tests.servers import ServerProcess, free_port, server_env

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
VENV_BIN = Path(sys.executable).parent

REQUIRED_SERVICES = {"postgres", "redis", "web", "stream", "worker", "beat"}
APP_PROCESSES = {"web", "stream", "worker", "beat"}
SECRETS = ("SECRET_KEY", "CALL_STATE_KEY")
ENV_READERS = {"env_str", "env_bool", "env_int", "env_list", "_secret"}


# --- reading the files -------------------------------------------------------------------


def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def services() -> dict[str, dict]:
    return compose()["services"]


def app_services() -> dict[str, dict]:
    """The services that run the server's own image (built from the Dockerfile)."""
    return {name: svc for name, svc in services().items() if svc.get("build") == "."}


def argv(value) -> list[str]:
    """A command or entrypoint as an argument list (compose takes a list or a string)."""
    if value is None:
        return []
    return shlex.split(value) if isinstance(value, str) else [str(item) for item in value]


def healthcheck_command(service: dict) -> list[str]:
    test = service["healthcheck"]["test"]
    if isinstance(test, str):
        return ["CMD-SHELL", test]
    return [str(item) for item in test]


def unescape(value: str) -> str:
    """What a container receives for a string of the compose file that uses no variables."""
    return value.replace("$$", "$")


_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?])?(?P<arg>[^}]*)\}")


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's interpolation for the forms this file uses: ${V}, ${V:-d}, ${V-d}, ${V:?m},
    ${V?m} and $$ for a literal $. A required variable that is missing raises LookupError."""

    def substitute(match: re.Match) -> str:
        name, op, arg = match["name"], match["op"] or "", match["arg"]
        value = env.get(name)
        unset = value is None or (op.startswith(":") and value == "")
        if op.endswith("?") and unset:
            raise LookupError(f"required variable {name} is missing a value: {arg}")
        if op.endswith("-") and unset:
            return arg
        return value or ""

    parts = value.split("$$")
    return "$".join(_VARIABLE.sub(substitute, part) for part in parts)


def all_strings(node):
    """Every string in the compose document (keys are plain names, values may interpolate)."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for item in node.values():
            yield from all_strings(item)
    elif isinstance(node, list):
        for item in node:
            yield from all_strings(item)


def env_names_read_by(path: Path, functions: set[str]) -> set[str]:
    """Names passed as a literal first argument to one of `functions` in a Python file."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not (isinstance(node, ast.Call) and node.args):
            continue
        func = node.func
        called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
        first = node.args[0]
        if called in functions and isinstance(first, ast.Constant):
            names.add(first.value)
    return names


def settings_env_names() -> set[str]:
    return env_names_read_by(ROOT / "pbx" / "settings.py", ENV_READERS)


def gunicorn_env_names() -> set[str]:
    """os.environ.get("NAME") / os.getenv("NAME") in the gunicorn config."""
    return env_names_read_by(ROOT / "pbx" / "gunicorn.conf.py", {"get", "getenv"})


# --- the Dockerfile ------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with comments dropped and continuation lines joined."""
    instructions, pending = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        keyword, _, rest = full.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    return instructions


def dockerfile_values(keyword: str) -> list[str]:
    return [rest for kw, rest in dockerfile_instructions() if kw == keyword]


def dockerfile_env() -> dict[str, str]:
    env = {}
    for rest in dockerfile_values("ENV"):
        for item in shlex.split(rest):
            name, _, value = item.partition("=")
            env[name] = value
    return env


def workdir() -> PurePosixPath:
    return PurePosixPath(dockerfile_values("WORKDIR")[-1])


def copy_instructions() -> list[tuple[list[str], str]]:
    """(sources, destination) of each COPY from the build context."""
    copies = []
    for rest in dockerfile_values("COPY"):
        args = shlex.split(rest)
        assert not any(a.startswith("--from") for a in args), "teach this test multi-stage"
        paths = [a for a in args if not a.startswith("--")]
        copies.append((paths[:-1], paths[-1]))
    return copies


def _ignore_rules() -> list[tuple[bool, re.Pattern]]:
    """.dockerignore as (is_exception, regex), Docker's pattern syntax with ** support."""
    rules = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        pattern = line.lstrip("!").strip().strip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif pattern[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif pattern[i] == "?":
                regex, i = regex + "[^/]", i + 1
            else:
                regex, i = regex + re.escape(pattern[i]), i + 1
        rules.append((exception, re.compile(regex + r"\Z")))
    return rules


def ignored(relative: str) -> bool:
    """Whether .dockerignore keeps a path (or a folder above it) out of the build context."""
    parts = PurePosixPath(relative).parts
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for exception, regex in _ignore_rules():
        if any(regex.match(candidate) for candidate in candidates):
            excluded = not exception
    return excluded


@cache
def image_files() -> dict[PurePosixPath, Path]:
    """Every file the COPY instructions put into the image: image path -> file in the repo."""
    files = {}
    for sources, destination in copy_instructions():
        dest = PurePosixPath(destination)
        if not dest.is_absolute():
            dest = workdir() / dest
        into_folder = destination.endswith("/") or len(sources) > 1
        for source in sources:
            path = ROOT / source
            if path.is_dir():
                for file in path.rglob("*"):
                    relative = file.relative_to(ROOT).as_posix()
                    if file.is_file() and not ignored(relative):
                        files[dest / file.relative_to(path).as_posix()] = file
            elif path.is_file():
                files[dest / path.name if into_folder else dest] = path
    return files


def in_image(container_path: str) -> Path | None:
    """The repo file behind a path as a process in the image sees it (relative to WORKDIR)."""
    path = PurePosixPath(container_path)
    return image_files().get(path if path.is_absolute() else workdir() / path)


def module_file(dotted: str) -> Path | None:
    """The file of a Python module in the image (module or package)."""
    base = dotted.replace(".", "/")
    return in_image(f"{base}.py") or in_image(f"{base}/__init__.py")


def defines(path: Path, name: str) -> bool:
    """Whether a module defines `name` at top level (assigned, a function, a class, imported)."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and any(
            (alias.asname or alias.name) == name for alias in node.names
        ):
            return True
        defined = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
        if isinstance(node, defined) and node.name == name:
            return True
        targets = node.targets if isinstance(node, ast.Assign) else []
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            return True
    return False


# --- checking a command --------------------------------------------------------------------


def option(args: list[str], *names: str) -> str | None:
    for i, arg in enumerate(args):
        for name in names:
            if arg == name and i + 1 < len(args):
                return args[i + 1]
            if name.startswith("--") and arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    return None


def check_command(args: list[str]) -> None:
    """Fail unless the command runs a program we know and everything it names is in the image."""
    assert args, "no command"
    program = args[0]
    if program == "gunicorn":
        config = option(args, "-c", "--config")
        assert config and in_image(config), f"gunicorn config {config} is not in the image"
        apps = [a for a in args[1:] if not a.startswith("-") and a != config]
        assert apps, f"no WSGI application in {args}"
        module, _, attribute = apps[-1].partition(":")
        path = module_file(module)
        assert path, f"WSGI module {module} is not in the image"
        assert defines(path, attribute or "application"), f"{path} has no WSGI application"
    elif program == "celery":
        name = option(args, "-A", "--app")
        assert name, f"celery without -A in {args}"
        assert module_file(name), f"celery app package {name} is not in the image"
        celery_module = module_file(f"{name}.celery")
        assert celery_module and defines(celery_module, "app"), f"no Celery app in {name}.celery"
        assert {"worker", "beat", "inspect"} & set(args), f"unknown celery command {args}"
    elif program == "uvicorn":
        apps = [a for a in args[1:] if ":" in a and not a.startswith("-")]
        assert apps, f"no ASGI application in {args}"
        module, _, attribute = apps[0].partition(":")
        path = module_file(module)
        assert path, f"ASGI module {module} is not in the image"
        assert defines(path, attribute), f"{path} has no {attribute}"
        # More than one uvicorn worker drops TCP_NODELAY (uvicorn issue 3149).
        assert option(args, "--workers") in (None, "1"), "the stream process runs one worker"
        assert "--no-access-log" in args, "stream URLs carry a pass: no access log"
    elif program in ("python", "python3"):
        assert args[1] == "manage.py", f"unknown python command {args}"
        assert in_image("manage.py"), "manage.py is not in the image"
        assert args[2] in get_commands(), f"{args[2]} is not a Django management command"
    else:
        pytest.fail(f"unknown program {program!r}: teach tests/test_compose.py about it")


# --- docker-compose.yml --------------------------------------------------------------------


def test_the_production_services_exist():
    assert set(services()) >= REQUIRED_SERVICES
    assert set(app_services()) >= APP_PROCESSES, "web, worker and beat run the server's image"
    assert services()["postgres"]["image"].startswith("postgres:16")
    assert services()["redis"]["image"].startswith("redis:7")


def test_every_service_is_health_checked_or_waited_for_with_a_condition():
    all_services = services()
    waited_for = {
        target
        for svc in all_services.values()
        for target, how in (svc.get("depends_on") or {}).items()
        if isinstance(how, dict) and how.get("condition")
    }
    for name, svc in all_services.items():
        assert "healthcheck" in svc or name in waited_for, f"{name}: no health check"
        if "healthcheck" in svc:
            kind = healthcheck_command(svc)[0]
            assert kind in ("CMD", "CMD-SHELL"), f"{name}: health check test starts with {kind}"


def test_dependencies_carry_conditions_that_can_be_met():
    all_services = services()
    for name, svc in all_services.items():
        depends_on = svc.get("depends_on") or {}
        assert isinstance(depends_on, dict), f"{name}: depends_on without conditions"
        for target, how in depends_on.items():
            assert target in all_services, f"{name} depends on unknown {target}"
            condition = how["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in all_services[target], f"{target} has no health check"
            else:
                assert condition == "service_completed_successfully", f"{name}: {condition}"
                assert all_services[target].get("restart", "no") == "no", (
                    f"{target} is waited for to finish, so it must not restart"
                )


def test_app_processes_wait_for_database_broker_and_migrations():
    all_services = services()
    for name in APP_PROCESSES:
        depends_on = all_services[name]["depends_on"]
        assert depends_on["postgres"]["condition"] == "service_healthy", name
        assert depends_on["redis"]["condition"] == "service_healthy", name
        migrations = [
            target
            for target, how in depends_on.items()
            if how["condition"] == "service_completed_successfully"
            and argv(all_services[target].get("command"))[:3] == ["python", "manage.py", "migrate"]
        ]
        assert migrations, f"{name} starts before the migrations ran"
        assert "--noinput" in argv(all_services[migrations[0]]["command"])


def test_nothing_runs_the_development_server():
    for name, svc in services().items():
        for key in ("command", "entrypoint"):
            assert "runserver" not in argv(svc.get(key)), f"{name} {key} uses runserver"
        if "healthcheck" in svc:
            assert "runserver" not in " ".join(healthcheck_command(svc)), name


def test_the_processes_run_what_they_are_named_for():
    all_services = services()
    web = argv(all_services["web"]["command"])
    assert web[0] == "gunicorn" and option(web, "-c", "--config") == "pbx/gunicorn.conf.py"
    assert argv(all_services["worker"]["command"])[:4] == ["celery", "-A", "pbx", "worker"]
    assert "--beat" not in argv(all_services["worker"]["command"]), "beat is its own service"
    assert argv(all_services["beat"]["command"])[:4] == ["celery", "-A", "pbx", "beat"]


def test_every_command_names_something_in_the_image():
    for name, svc in app_services().items():
        assert "entrypoint" not in svc, f"{name}: check its entrypoint too"
        command = argv(svc.get("command")) or dockerfile_cmd()
        try:
            check_command(command)
        except AssertionError as error:
            raise AssertionError(f"service {name}: {error}") from None


def test_command_checks_catch_wrong_paths():
    """The checker itself must fail on names that are not there."""
    wrong = [
        ["gunicorn", "-c", "pbx/gunicorn.conf.pyx", "pbx.wsgi"],
        ["gunicorn", "-c", "pbx/gunicorn.conf.py", "pbx.wsgix"],
        ["gunicorn", "-c", "pbx/gunicorn.conf.py", "pbx.wsgi:app"],
        ["celery", "-A", "pbxx", "worker"],
        ["python", "manage.py", "migrat"],
        ["python", "manages.py", "migrate"],
        ["uvicorn", "pbx.asgi:application"],
    ]
    for args in wrong:
        with pytest.raises((AssertionError, pytest.fail.Exception)):
            check_command(args)


def test_beat_keeps_its_schedule_in_the_writable_data_dir():
    beat = services()["beat"]
    schedule = option(argv(beat["command"]), "-s", "--schedule")
    data_dir = dockerfile_env()["DATA_DIR"]
    assert schedule and PurePosixPath(schedule).parent == PurePosixPath(data_dir)
    assert any("chown" in run and "DATA_DIR" in run for run in dockerfile_values("RUN")), (
        "the Dockerfile must give $DATA_DIR to the app user"
    )
    assert schedule in healthcheck_command(beat)[-1], "beat's health check looks elsewhere"


def test_app_environment_holds_only_settings_the_code_reads():
    read = settings_env_names()
    assert {"SECRET_KEY", "CALL_STATE_KEY", "DATABASE_URL", "REDIS_URL"} <= read, read
    for name, svc in app_services().items():
        environment = svc.get("environment") or {}
        assert isinstance(environment, dict), f"{name}: write environment as a mapping"
        allowed = set(read)
        if argv(svc.get("command"))[:1] == ["gunicorn"]:
            allowed |= gunicorn_env_names()
        unknown = set(environment) - allowed
        assert not unknown, f"{name} sets {sorted(unknown)}, which nothing reads"
        for required in ("SECRET_KEY", "CALL_STATE_KEY", "DATABASE_URL", "REDIS_URL"):
            assert required in environment, f"{name} lacks {required}"
        assert str(environment.get("DEBUG", "false")).lower() in ("false", "0", "no", "off")
        if "DATA_DIR" in environment:
            assert environment["DATA_DIR"] == dockerfile_env()["DATA_DIR"], "static files"


def test_the_settings_parser_sees_the_settings():
    """Guard for the test above: the parser finds names, and not names that are absent."""
    read = settings_env_names()
    assert {"DEBUG", "ALLOWED_HOSTS", "NUM_PROXIES", "SECURE_COOKIES"} <= read
    assert "SECRET" not in read and "WEB_WORKERS" not in read
    assert {"WEB_WORKERS", "LOG_LEVEL"} <= gunicorn_env_names()


def test_secrets_are_required_with_a_message():
    for name, svc in app_services().items():
        for secret in SECRETS:
            value = svc["environment"][secret]
            assert re.fullmatch(rf"\$\{{{secret}:\?[^}}]+\}}", value), f"{name}: {secret}={value}"


def test_dollar_signs_are_variables_or_escaped():
    """A bare $NAME would be replaced by compose on the host, usually with nothing."""
    for text in all_strings(compose()):
        rest = _VARIABLE.sub("", text.replace("$$", ""))
        assert "$" not in rest, f"unescaped $ in {text!r}"


def test_compose_refuses_to_start_without_the_secrets():
    given = {"SECRET_KEY": "s", "CALL_STATE_KEY": "c", "POSTGRES_PASSWORD": "p"}
    for missing in SECRETS:
        env = {k: v for k, v in given.items() if k != missing}
        with pytest.raises(LookupError, match=missing):
            for text in all_strings(compose()):
                interpolate(text, env)
        with pytest.raises(LookupError, match=missing):
            interpolate(services()["web"]["environment"][missing], {**env, missing: ""})


def test_the_app_reaches_the_compose_database_and_redis():
    all_services = services()
    env = {"SECRET_KEY": "s", "CALL_STATE_KEY": "c", "POSTGRES_PASSWORD": "pw"}
    for name, svc in app_services().items():
        environment = svc["environment"]
        database = urlparse(interpolate(environment["DATABASE_URL"], env))
        assert database.scheme in ("postgres", "postgresql") and database.hostname in all_services
        postgres_env = all_services[database.hostname]["environment"]
        assert database.username == postgres_env["POSTGRES_USER"], name
        assert database.password == interpolate(postgres_env["POSTGRES_PASSWORD"], env), name
        assert database.path.lstrip("/") == postgres_env["POSTGRES_DB"], name
        broker = urlparse(interpolate(environment["REDIS_URL"], env))
        assert broker.scheme == "redis" and broker.hostname == "redis", name
        assert "localhost" in interpolate(environment["ALLOWED_HOSTS"], env).split(","), (
            "the web health check asks for Host: localhost"
        )


def test_postgres_keeps_its_data_in_a_named_volume():
    volumes = compose().get("volumes") or {}
    mounts = [str(m).split(":") for m in services()["postgres"].get("volumes", [])]
    assert any(
        source in volumes and target == "/var/lib/postgresql/data" for source, target in mounts
    )


def test_database_and_broker_health_checks():
    assert "pg_isready" in healthcheck_command(services()["postgres"])[1]
    assert "redis-cli ping" in " ".join(healthcheck_command(services()["redis"]))


# --- Dockerfile ----------------------------------------------------------------------------


def dockerfile_cmd() -> list[str]:
    return json.loads(dockerfile_values("CMD")[-1])


def test_dockerfile_base_user_and_install():
    assert dockerfile_values("FROM") == ["python:3.13-slim"]
    users = dockerfile_values("USER")
    assert users and users[-1] not in ("root", "0"), "the processes must not run as root"
    assert any("pip install -r requirements.txt" in run for run in dockerfile_values("RUN"))


def test_dockerfile_copy_sources_exist_and_reach_the_builder():
    for sources, _ in copy_instructions():
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: not in the repo"
            assert not ignored(source.rstrip("/")), f"COPY {source}: excluded by .dockerignore"


def test_dockerfile_copies_everything_the_settings_load():
    """A new Django app, template or static folder must be copied into the image too."""
    from django.conf import settings

    needed = {"manage.py", "requirements.txt", settings.ROOT_URLCONF.split(".")[0]}
    needed |= {app.split(".")[0] for app in settings.INSTALLED_APPS if (ROOT / app).is_dir()}
    needed |= {Path(d).relative_to(ROOT).as_posix() for t in settings.TEMPLATES for d in t["DIRS"]}
    needed |= {Path(d).relative_to(ROOT).as_posix() for d in settings.STATICFILES_DIRS}
    copied = {s.rstrip("/") for sources, _ in copy_instructions() for s in sources}
    assert needed <= copied, f"not copied into the image: {sorted(needed - copied)}"
    assert in_image("pbx/settings.py") and in_image("presence/migrations/0001_initial.py")


def test_dockerfile_cmd_runs_gunicorn_with_the_config_file():
    command = dockerfile_cmd()
    assert command == ["gunicorn", "-c", "pbx/gunicorn.conf.py", "pbx.wsgi"]
    check_command(command)


def test_dockerfile_builds_static_files_without_keeping_keys():
    collect = [run for run in dockerfile_values("RUN") if "collectstatic" in run]
    assert collect, "collectstatic must run at build time"
    for secret in SECRETS:
        assert f"{secret}=" in collect[0], f"collectstatic needs a throw-away {secret}"
        assert secret not in dockerfile_env(), f"{secret} must not stay in the image"
        assert not any(secret in arg for arg in dockerfile_values("ARG")), "ARGs stay in history"


def test_dockerignore_keeps_local_state_out():
    for path in (".git", ".venv", "var/keys.env", ".env", "pbx/__pycache__/settings.pyc"):
        assert ignored(path), f"{path} would be sent to the builder"
    for path in ("pbx/settings.py", "requirements.txt", "static/.keep"):
        assert not ignored(path), path


# --- the health checks, run for real -------------------------------------------------------


def run_python_check(code: str, env: dict[str, str] | None = None) -> int:
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, timeout=60
    ).returncode


@pytest.mark.server
def test_web_health_check_passes_on_gunicorn_and_fails_without_it(tmp_path):
    test = healthcheck_command(services()["web"])
    assert test[:3] == ["CMD", "python", "-c"]
    code = unescape(test[3])
    assert "8000" in code
    port = free_port()
    # gunicorn as the image runs it. Like Docker, retry while it starts (the WebServer
    # fixture gives up when the first request times out during worker boot).
    server = ServerProcess(
        [str(VENV_BIN / "gunicorn"), *dockerfile_cmd()[1:], "--bind", f"127.0.0.1:{port}"],
        {**server_env(), "WEB_WORKERS": "1"},
        tmp_path / "web.log",
    )
    try:
        deadline = time.monotonic() + 30
        while run_python_check(code.replace("8000", str(port))) != 0:
            assert server.process.poll() is None, server.output()
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.5)
    finally:
        server.stop()
    assert run_python_check(code.replace("8000", str(port))) != 0, "nothing listens now"


@pytest.mark.server
def test_worker_and_beat_health_checks_pass_on_a_running_worker(celery_worker, tmp_path):
    worker_test = healthcheck_command(services()["worker"])
    assert worker_test[0] == "CMD-SHELL"
    env = {
        **server_env(),
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
        "HOSTNAME": socket.gethostname(),
    }
    deadline = time.monotonic() + 60
    while True:
        result = subprocess.run(
            ["sh", "-c", unescape(worker_test[1])], cwd=ROOT, env=env, capture_output=True
        )
        if result.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert result.returncode == 0, result.stdout + result.stderr + celery_worker.output().encode()

    beat_test = healthcheck_command(services()["beat"])
    schedule = option(argv(services()["beat"]["command"]), "--schedule")
    local_schedule = str(tmp_path / "worker.beat")  # where the celery_worker fixture keeps it
    code = unescape(beat_test[-1]).replace(schedule, local_schedule)
    deadline = time.monotonic() + 30
    while not list(tmp_path.glob("worker.beat*")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert run_python_check(code) == 0, celery_worker.output()
    assert run_python_check(code.replace(local_schedule, str(tmp_path / "nothing"))) != 0
    stale = time.time() - 3600
    for file in tmp_path.glob("worker.beat*"):
        os.utime(file, (stale, stale))
    assert run_python_check(code) != 0


def test_the_kamailio_service_runs_the_repos_presence_config():
    """docs/sip.md: optional (profile sip), built from deploy/kamailio with our template."""
    kamailio = services()["kamailio"]
    context = ROOT / kamailio["build"]
    assert context == ROOT / "deploy" / "kamailio"
    assert (context / "kamailio.cfg.in").is_file() and (context / "Dockerfile").is_file()
    dockerfile = (context / "Dockerfile").read_text()
    assert "COPY kamailio.cfg.in /etc/kamailio/" in dockerfile
    assert "COPY render-config /usr/local/bin/kamailio-presence" in dockerfile
    assert argv(kamailio["command"]) == ["kamailio-presence"]
    script = (context / "render-config").read_text()
    assert "exec kamailio -DD -E -f" in script, "Kamailio runs in the foreground"
    for name in re.findall(r"@([A-Z_]+)@", (context / "kamailio.cfg.in").read_text()):
        assert f"s#@{name}@#" in script, f"render-config does not fill in @{name}@"
    assert kamailio["profiles"] == ["sip"]
    assert healthcheck_command(kamailio)[1:3] == ["kamcmd", "-s"]
