"""The services a comparison starts for itself: ``switchyard upstream`` and a private
MariaDB on tmpfs."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional



def terminate(proc: subprocess.Popen, timeout: float) -> None:
    """Ends ``proc`` if it still runs: SIGTERM, then SIGKILL after ``timeout`` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

class Upstream:
    """A ``switchyard upstream`` on a free port, stopped on exit."""

    def __init__(self, binary: Path, log_path: Path) -> None:
        self._log = log_path.open("w", encoding="utf-8")
        self.proc = subprocess.Popen(
            [str(binary), "upstream", "--listen", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        self.url = self._read_address(timeout_s=15.0)
        threading.Thread(target=self._drain, daemon=True).start()

    def _read_address(self, timeout_s: float) -> str:
        assert self.proc.stderr is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            self._log.write(line)
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            address = entry.get("address") or entry.get("fields", {}).get("address")
            if address:
                return f"http://{address}"
        self.stop()
        raise RuntimeError("switchyard upstream did not log its address")

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._log.write(line)
        self._log.flush()

    def stop(self) -> None:
        terminate(self.proc, timeout=10)
        self._log.flush()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateMariaDB:
    """A throwaway mariadbd with its datadir on tmpfs, for this invocation only:
    ``--skip-grant-tables`` (root, no password), 127.0.0.1 on a free port, socket in
    the same directory, database ``test``. :meth:`stop` ends it and deletes the
    directory."""

    def __init__(self, base: str = "/dev/shm") -> None:
        for tool in ("mariadb-install-db", "mariadbd"):
            if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
                raise RuntimeError(f"{tool} not found: install mariadb-server, or pass --mysql-url")
        self.dir = Path(tempfile.mkdtemp(prefix="pz1-mariadb-", dir=base))
        self.port = free_port()
        self.proc: Optional[subprocess.Popen] = None
        data = self.dir / "data"
        user = ["--user=root"] if os.geteuid() == 0 else []
        subprocess.run(
            ["mariadb-install-db", "--no-defaults", f"--datadir={data}", "--auth-root-authentication-method=normal",
             "--skip-test-db", *user],
            stdout=(self.dir / "install.log").open("w"), stderr=subprocess.STDOUT, check=True, timeout=120,
        )
        mariadbd = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
        self.proc = subprocess.Popen(
            [mariadbd, "--no-defaults", f"--datadir={data}", f"--socket={self.dir / 'mysqld.sock'}",
             f"--port={self.port}", "--bind-address=127.0.0.1", f"--pid-file={self.dir / 'mysqld.pid'}",
             f"--log-error={self.dir / 'error.log'}", "--skip-grant-tables", "--skip-log-bin",
             "--innodb-use-native-aio=0", "--max-connections=1000", *user],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        self._wait_ready()
        self.url = f"mysql://root@127.0.0.1:{self.port}/test"

    def _wait_ready(self, timeout_s: float = 60.0) -> None:
        import pymysql

        deadline = time.monotonic() + timeout_s
        while True:
            try:
                conn = pymysql.connect(host="127.0.0.1", port=self.port, user="root", connect_timeout=2)
                with conn.cursor() as cur:
                    cur.execute("CREATE DATABASE IF NOT EXISTS test")
                conn.close()
                return
            except Exception:
                if self.proc is not None and self.proc.poll() is not None:
                    raise RuntimeError(f"the private mariadbd exited; see {self.dir / 'error.log'}") from None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)

    def describe(self) -> str:
        return f"private MariaDB on tmpfs ({self.dir}, 127.0.0.1:{self.port}, deleted at the end)"

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc, timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)


