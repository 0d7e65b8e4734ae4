"""`intake dev`: the whole service on one machine with embedded defaults, stopped by Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from service.config import load_config
from service.db import migrate
from service.localredis import LocalRedis, answers, free_port
from service.settings import Settings

STOP_GRACE_SECONDS = 15.0


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def run_dev(settings: Settings, port: int) -> int:
    load_config(settings.config)  # fail now, with a clear message, not in three processes
    var = Path(settings.var_dir)
    overrides: dict[str, object] = {"dev_mode": True}
    if "INTAKE_LOG_FORMAT" not in os.environ:
        overrides["log_format"] = "human"
    if "INTAKE_PUBLIC_URL" not in os.environ:
        overrides["public_url"] = f"http://127.0.0.1:{port}"

    private_redis = None
    if not answers(settings.redis_url):
        print(f"intake: no Redis at {settings.redis_url}; starting a private redis-server")
        private_redis = LocalRedis(var / "redis").start()
        overrides["redis_url"] = private_redis.url
        overrides["broker_url"] = ""

    from workers.mailcatcher import start_mailcatcher

    smtp_port = settings.smtp_port if _port_free(settings.smtp_port) else free_port()
    catcher = start_mailcatcher(var / "mail", settings.smtp_host, smtp_port)
    overrides.update(smtp_port=smtp_port, smtp_security="none", smtp_username="")
    settings = settings.with_overrides(**overrides)
    migrate(settings.database_url)

    env = {**os.environ, **settings.as_env()}
    intake = [sys.executable, "-m", "service.cli"]
    children = [
        subprocess.Popen([*intake, "web", "--port", str(port)], env=env),  # noqa: S603
        subprocess.Popen([*intake, "worker", "--concurrency", "2"], env=env),  # noqa: S603
        subprocess.Popen([*intake, "beat"], env=env),  # noqa: S603
    ]
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    print(
        f"\n  Intake is running.\n"
        f"  Form:        http://127.0.0.1:{port}/\n"
        f"  Post to:     http://127.0.0.1:{port}/f/contact\n"
        f"  Mailbox:     http://127.0.0.1:{port}/dev/mailbox  (files in {var / 'mail'})\n"
        f"  Press Ctrl-C to stop.\n",
        flush=True,
    )
    code = 0
    while not stopping:
        if any(child.poll() is not None for child in children):
            print("intake: a process stopped unexpectedly; shutting down", file=sys.stderr)
            code = 1
            break
        time.sleep(0.5)
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for child in children:
        try:
            child.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            child.kill()
    catcher.stop()
    if private_redis is not None:
        private_redis.stop()
    print("intake: stopped")
    return code
