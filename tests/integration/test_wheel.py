"""mailgate as an admin installs it: a built wheel in a fresh virtual environment,
run from an empty folder far from the checkout — ``db upgrade``, ``check`` and
``serve``, and one mail over SMTP acknowledged into the outgoing Maildir.

The templates and migration scripts must come from inside the installed package.
The wheel is installed without its dependencies, which the fresh environment borrows
from this test run's own environment through a ``.pth`` file (that environment's
editable mailgate is not activated there: only site directories run ``.pth`` files),
so the test needs no network for them and stays well under a minute.
"""

from __future__ import annotations

import os
import signal
import smtplib
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

from tests.support import free_port, make_mail

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str | Path, cwd: Path, timeout: float = 120) -> str:
    done = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def clean_env() -> dict[str, str]:
    """No MAILGATE_ settings and no PYTHONPATH pointing back into the checkout."""
    keep = ("PATH", "HOME", "LANG", "PIP_CONFIG_FILE", "SSL_CERT_FILE", "TMPDIR")
    return {k: v for k, v in os.environ.items() if k in keep}


def build_and_install(tmp_path: Path) -> Path:
    """The wheel built from this checkout, installed into a fresh venv; its bin/."""
    dist = tmp_path / "dist"
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", dist, ROOT, cwd=tmp_path)
    [wheel] = dist.glob("mailgate-*.whl")
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    run(sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", wheel,
        cwd=tmp_path)  # fmt: skip
    site = run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=tmp_path)
    deps = sysconfig.get_path("purelib")  # this environment's third-party packages
    (Path(site.strip()) / "borrowed-deps.pth").write_text(deps + "\n")
    return venv / "bin"


def test_the_built_wheel_runs_from_an_empty_folder(tmp_path: Path) -> None:
    started = time.monotonic()
    bin_dir = build_and_install(tmp_path)
    work = tmp_path / "empty"
    work.mkdir()
    where = run(bin_dir / "python", "-c", "import mailgate; print(mailgate.__file__)", cwd=work)
    assert where.startswith(str(tmp_path / "venv")), where
    smtp_port, http_port = free_port(), free_port()
    config = tmp_path / "etc" / "mailgate.toml"
    config.parent.mkdir()
    config.write_text(
        f'[database]\nurl = "sqlite:///{work}/db/mailgate.db"\n'
        f'[smtp]\nlisten = "127.0.0.1:{smtp_port}"\n'
        f'[http]\nlisten = "127.0.0.1:{http_port}"\n'
        f'[outbound]\nmaildir = "{work}/sent"\n'
        "[verify]\ndns_lookups = false\n"
    )
    mailgate = bin_dir / "mailgate"
    assert run(mailgate, "--version", cwd=work).startswith("mailgate, version ")
    run(mailgate, "--config", config, "db", "upgrade", cwd=work)
    checked = run(mailgate, "--config", config, "check", cwd=work)
    assert "ok   database" in checked and "schema current" in checked, checked
    assert f"{tmp_path / 'venv'}" in checked  # the templates inside the installed package
    daemon = subprocess.Popen(
        [mailgate, "--config", config, "serve"],
        cwd=work,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        client = connect(smtp_port, daemon)
        with client:
            client.sendmail(
                "jan@customer.example", ["support@helpdesk.example"], make_mail(subject="wheel")
            )
        sent = work / "sent" / "new"
        deadline = time.monotonic() + 30
        while not (sent.is_dir() and any(sent.iterdir())):
            assert time.monotonic() < deadline, "no acknowledgement in the Maildir"
            assert daemon.poll() is None, daemon.communicate()[0]
            time.sleep(0.2)
        [ack] = sent.iterdir()
        assert b"To: jan@customer.example" in ack.read_bytes()
    finally:
        daemon.send_signal(signal.SIGTERM)
        output = daemon.communicate(timeout=30)[0]
    assert daemon.returncode == 0, output
    assert "Traceback" not in output, output
    assert time.monotonic() - started < 90


def connect(port: int, daemon: subprocess.Popen[str]) -> smtplib.SMTP:
    deadline = time.monotonic() + 30
    while True:
        try:
            return smtplib.SMTP("127.0.0.1", port, timeout=10)
        except OSError:
            assert daemon.poll() is None, daemon.communicate()[0]
            assert time.monotonic() < deadline, "serve did not listen"
            time.sleep(0.2)
