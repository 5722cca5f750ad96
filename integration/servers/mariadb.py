#!/usr/bin/env python3
"""A throwaway MariaDB server for the integration tier.

Creates a data directory with mariadb-install-db (no --skip-grant-tables: real
accounts with passwords), starts mariadbd on 127.0.0.1:<free port> with an init file
that creates an administrative account and an application account, waits until the
port accepts connections, then prints one JSON line announcing the port and accounts.
mariadbd dies with this script (PR_SET_PDEATHSIG) and when stdin closes (the harness
dropped its handle); the data directory is removed.

Usage: mariadb.py
"""
import ctypes
import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ADMIN = ("bloodraven", "admin-secret")
APP = ("app", "app-secret")
DATABASE = "bloodraven_counter"


def die_with_parent():
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    work = tempfile.mkdtemp(prefix="bloodraven-mariadb-")
    data = os.path.join(work, "data")
    tmp = os.path.join(work, "tmp")
    os.mkdir(tmp)
    user_args = ["--user=" + getpass.getuser()] if os.geteuid() == 0 else []
    install = subprocess.run(
        ["mariadb-install-db", "--no-defaults", "--datadir=" + data,
         "--auth-root-authentication-method=socket", "--skip-test-db",
         "--skip-name-resolve"] + user_args,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if install.returncode != 0:
        sys.stderr.write(install.stdout)
        shutil.rmtree(work, ignore_errors=True)
        sys.exit(1)
    init = os.path.join(work, "init.sql")
    with open(init, "w") as f:
        f.write(f"""
CREATE USER '{ADMIN[0]}'@'%' IDENTIFIED BY '{ADMIN[1]}';
GRANT ALL ON *.* TO '{ADMIN[0]}'@'%' WITH GRANT OPTION;
CREATE USER '{APP[0]}'@'%' IDENTIFIED BY '{APP[1]}';
GRANT ALL ON {DATABASE}.* TO '{APP[0]}'@'%';
""")
    port = free_port()
    log = os.path.join(work, "error.log")
    server = subprocess.Popen(
        ["mariadbd", "--no-defaults", "--datadir=" + data, "--port=%d" % port,
         "--bind-address=127.0.0.1", "--socket=" + os.path.join(work, "sock"),
         "--pid-file=" + os.path.join(work, "pid"), "--log-error=" + log,
         "--skip-name-resolve", "--init-file=" + init,
         "--innodb-buffer-pool-size=32M", "--tmpdir=" + tmp] + user_args,
        stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)

    def stop(*_):
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(work, ignore_errors=True)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    deadline = time.time() + 120
    while True:
        if server.poll() is not None:
            with open(log) as f:
                sys.stderr.write(f.read())
            shutil.rmtree(work, ignore_errors=True)
            sys.exit(1)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if time.time() > deadline:
                sys.stderr.write("mariadbd did not listen within 120 s\n")
                stop()
            time.sleep(0.2)
    print(json.dumps({
        "port": port,
        "admin_user": ADMIN[0], "admin_password": ADMIN[1],
        "app_user": APP[0], "app_password": APP[1],
        "database": DATABASE,
    }), flush=True)
    sys.stdin.read()
    stop()


if __name__ == "__main__":
    main()
