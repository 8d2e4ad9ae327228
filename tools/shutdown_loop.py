#!/usr/bin/env python3
"""SIGTERM against a busy `banyan serve --workflows`, many times, under CPU load: each run starts
a server on a fresh store, uploads two workflows scheduled every second (so the in-process engine
keeps its own keep-alive connections busy), sends SIGTERM 1.5 s later and times the exit. Prints
each run and the count of servers that did not exit within --timeout s (then killed).

    python3 tools/shutdown_loop.py --banyan .build/debug/banyan --runs 30 --load 3
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time

import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer.common import free_port, wait_until  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--banyan", default=os.path.join(REPO, ".build", "debug", "banyan"))
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--load", type=int, default=3, help="busy-looping processes beside the server (default 3)")
    ap.add_argument("--timeout", type=float, default=8.0)
    args = ap.parse_args()
    if not 1 <= args.runs <= 1_000 or not 0 <= args.load <= 64 or not 1 <= args.timeout <= 120:
        ap.error("--runs 1..1000, --load 0..64, --timeout 1..120")
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.load)]
    hung = 0
    try:
        with tempfile.TemporaryDirectory(prefix="shutdown-loop-") as root:
            for i in range(args.runs):
                port = free_port()
                url = f"http://127.0.0.1:{port}"
                with open(os.path.join(root, f"run{i}.log"), "wb") as log:
                    proc = subprocess.Popen([args.banyan, "serve", "--data-dir", os.path.join(root, f"d{i}"), "--port", str(port),
                                             "--grpc-port", "0", "--workflows"], stdout=log, stderr=subprocess.STDOUT)
                try:
                    wait_until(lambda: requests.get(url + "/healthz", timeout=1).ok, 60, "banyan", proc)
                    for name, policy in (("lazy", "none"), ("eager", "all")):
                        body = (f'name: {name}\nschedule: {{cron: "* * * * * *", overlap: allow, catch_up: {policy}}}\n'
                                "tasks:\n  - {id: t, kind: swift, function: noop}\n")
                        r = requests.post(url + "/v1/workflows", data=body.encode(), headers={"Content-Type": "application/yaml"}, timeout=10)
                        r.raise_for_status()
                    time.sleep(1.5)
                    t = time.monotonic()
                    proc.send_signal(signal.SIGTERM)
                    try:
                        proc.wait(args.timeout)
                        print(f"run {i}: exit {proc.returncode} after {time.monotonic() - t:.2f} s", flush=True)
                    except subprocess.TimeoutExpired:
                        hung += 1
                        print(f"run {i}: still running {args.timeout:.0f} s after SIGTERM (killed)", flush=True)
                finally:
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait()
    finally:
        for b in burners:
            b.kill()
    print(f"{hung} of {args.runs} servers did not exit within {args.timeout:.0f} s")


if __name__ == "__main__":
    main()
