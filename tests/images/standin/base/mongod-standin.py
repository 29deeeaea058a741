#!/usr/bin/env python3
"""A stand-in named ``mongod`` for the image tests only: NOT MongoDB (which Debian 12 does not
ship). It accepts TCP connections on ``--port`` (default 27017) at ``--bind_ip`` and closes them;
the other mongod options (``--dbpath`` ...) are accepted and ignored. Enough for the supervisor's
port wait and the stand-in service's check that its configured database port answers."""

import argparse
import signal
import socket
import sys


def main() -> int:
    parser = argparse.ArgumentParser(prog="mongod")
    parser.add_argument("--port", type=int, default=27017)
    parser.add_argument("--bind_ip", default="127.0.0.1")
    args, ignored = parser.parse_known_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with socket.create_server((args.bind_ip.split(",")[0], args.port)) as server:
        print(f"mongod stand-in listening on {args.port} (ignored: {ignored})", flush=True)
        while True:
            conn, _ = server.accept()
            conn.close()


if __name__ == "__main__":
    sys.exit(main())
