#!/usr/bin/env python3
"""A throwaway MariaDB server for the integration tier's backup pipeline.

Initialises a fresh data directory under argv[1] (mariadb-install-db), starts mariadbd
on 127.0.0.1 at a free port with binary logging on (mariadb-dump --master-data needs
it) and GTIDs, creates the account argv[2] with password argv[3] holding every
privilege and the application account `app` holding every privilege on the counter
database only (what the counter app has: read_only refuses it, unlike an account with
SUPER), prints one JSON line (host, port, user, password, socket, app_user,
app_password, database), and serves until
its standard input closes; then it stops mariadbd, so the server never outlives the
test harness that started it.
"""
import ctypes
import json
import os
import signal
import shutil
import socket
import subprocess
import sys
import time

APP = ("app", "app-secret")
DATABASE = "bloodraven_counter"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def program(*names: str) -> str:
    for name in names:
        for directory in ("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"):
            path = os.path.join(directory, name)
            if os.access(path, os.X_OK):
                return path
        found = shutil.which(name)
        if found:
            return found
    print(f"none of {names} is installed: apt-get install mariadb-server mariadb-client",
          file=sys.stderr)
    sys.exit(3)


def die_with_parent() -> None:
    """The harness kills this script with SIGKILL when its handle drops, which skips the
    `finally` below: PR_SET_PDEATHSIG makes the kernel stop mariadbd then too."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def main() -> int:
    base = sys.argv[1]
    user, password = sys.argv[2], sys.argv[3]
    datadir = os.path.join(base, "data")
    sock = os.path.join(base, "mysqld.sock")
    os.makedirs(datadir, exist_ok=True)
    install = program("mariadb-install-db", "mysql_install_db")
    server = program("mariadbd", "mysqld")
    client = program("mariadb", "mysql")
    run_as = ["--user=root"] if os.geteuid() == 0 else []
    init = subprocess.run(
        [install, "--no-defaults", f"--datadir={datadir}", "--skip-test-db",
         "--auth-root-authentication-method=socket", *run_as],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if init.returncode != 0:
        print(f"mariadb-install-db failed: {init.stderr}", file=sys.stderr)
        return 4
    port = free_port()
    mariadbd = subprocess.Popen(
        [server, "--no-defaults", f"--datadir={datadir}", f"--socket={sock}",
         f"--port={port}", "--bind-address=127.0.0.1", "--skip-name-resolve",
         f"--log-bin={os.path.join(base, 'binlog')}", "--server-id=1",
         f"--pid-file={os.path.join(base, 'mysqld.pid')}", "--innodb-buffer-pool-size=32M",
         *run_as],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=sys.stderr,
        preexec_fn=die_with_parent)
    try:
        deadline = time.monotonic() + 60
        while True:
            ping = subprocess.run([client, "--no-defaults", "-S", sock, "-uroot", "-e",
                                   "SELECT 1"], capture_output=True)
            if ping.returncode == 0:
                break
            if mariadbd.poll() is not None:
                print(f"mariadbd exited with {mariadbd.returncode}", file=sys.stderr)
                return 5
            if time.monotonic() > deadline:
                print("mariadbd did not answer within 60 s", file=sys.stderr)
                return 6
            time.sleep(0.2)
        grant = subprocess.run(
            [client, "--no-defaults", "-S", sock, "-uroot", "-e",
             f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}';"
             f" GRANT ALL PRIVILEGES ON *.* TO '{user}'@'%' WITH GRANT OPTION;"
             f" CREATE USER '{APP[0]}'@'%' IDENTIFIED BY '{APP[1]}';"
             f" GRANT ALL PRIVILEGES ON {DATABASE}.* TO '{APP[0]}'@'%';"],
            capture_output=True, text=True)
        if grant.returncode != 0:
            print(f"creating the account failed: {grant.stderr}", file=sys.stderr)
            return 7
        print(json.dumps({"host": "127.0.0.1", "port": port, "user": user,
                          "password": password, "socket": sock, "app_user": APP[0],
                          "app_password": APP[1], "database": DATABASE}), flush=True)
        sys.stdin.read()
        return 0
    finally:
        mariadbd.terminate()
        try:
            mariadbd.wait(timeout=30)
        except subprocess.TimeoutExpired:
            mariadbd.kill()


if __name__ == "__main__":
    sys.exit(main())
