#!/usr/bin/env python3
"""How long the dashboard takes to draw a large lineage graph, and what its files weigh.

Starts `banyan serve` on a store holding the git/git dataset (imported into a temporary
directory unless --data-dir names one), then opens /ui/events/{id} in Debian's headless chromium
(selenium + chromedriver) --rounds times in one tab, its cache cleared before each, and reads the
`banyan-graph-drawn` performance mark: milliseconds from the start of navigation to the graph's
SVG being in the document (the event, its parents and children, the lineage queries and the
layout included). The default event and depth give about 2,000 ancestors.

    python3 tools/dashboard_render.py
    python3 tools/dashboard_render.py --event 40000 --up 30 --nodes 2200 --rounds 9

Prints one Markdown table of the render times (median and range) and one of the asset sizes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer import common  # noqa: E402
from peer.banyan import dataset_server  # noqa: E402

DATASET = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "datasets", "git-dag.jsonl.zst")
ASSETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Sources", "BanyanServer", "UI", "Assets")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--banyan", default=".build/release/banyan")
    ap.add_argument("--data-dir", help="a store holding the git/git dataset, named banyan-<something>")
    ap.add_argument("--dataset", default=DATASET)
    ap.add_argument("--event", type=int, default=40000)
    ap.add_argument("--up", type=int, default=30, help="ancestor depth (30 from 40000: 2,159 events)")
    ap.add_argument("--down", type=int, default=0)
    ap.add_argument("--nodes", type=int, default=2200)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    common.LOG_PREFIX = "dashboard_render"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    root = tempfile.mkdtemp(prefix="dashboard-render-")
    procs = common.Processes()
    try:
        server = dataset_server(procs, args.banyan, args.data_dir, args.dataset, root)
        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900", "--disable-application-cache"):
            options.add_argument(arg)
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        url = f"{server.url}/ui/events/{args.event}?up={args.up}&down={args.down}&nodes={args.nodes}"
        times, nodes = [], set()
        try:
            for r in range(args.rounds):
                driver.execute_cdp_cmd("Network.clearBrowserCache", {})
                driver.get(url)
                WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, '.graph-area[data-drawn="true"]'))
                ms = driver.execute_script("return performance.getEntriesByName('banyan-graph-drawn')[0].startTime")
                drawn = int(driver.execute_script("return document.querySelector('svg.graph').dataset.nodes"))
                times.append(ms)
                nodes.add(drawn)
                common.log(f"round {r + 1}: {drawn} nodes drawn {ms:.0f} ms after navigation started")
        finally:
            driver.quit()
        print(f"`/ui/events/{args.event}?up={args.up}&down={args.down}&nodes={args.nodes}`, {args.rounds} rounds, "
              f"nodes drawn {sorted(nodes)}, load average {os.getloadavg()[0]:.2f}\n")
        print("| | median | range |")
        print("|---|---|---|")
        print(f"| navigation start to graph drawn | {statistics.median(times):.0f} ms | {min(times):.0f}-{max(times):.0f} ms |\n")
        print("| asset | bytes | served |")
        print("|---|---|---|")
        total = 0
        for asset in sorted(os.listdir(ASSETS)):
            size = os.path.getsize(os.path.join(ASSETS, asset))
            with urllib.request.urlopen(f"{server.url}/ui/assets/{asset}" if asset != "index.html" else f"{server.url}/ui/") as r:
                served = len(r.read())
            total += size
            print(f"| {asset} | {size:,} | {'same' if served == size else served} |")
        print(f"| **total** | **{total:,}** | |")
    finally:
        procs.stop_all()


if __name__ == "__main__":
    main()
