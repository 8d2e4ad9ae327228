"""The web dashboard (/ui/, docs/DASHBOARD.md) in a real browser: Debian's headless chromium
driven by selenium through Debian's chromedriver, against real `banyan serve` processes, one of
them holding the git/git commit graph (shared/datasets).

Screenshots of every page, at 1280 and 390 px wide, are written to
BANYAN_ARTIFACTS (default .build/artifacts/dashboard) for a person to look at.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests

from conftest import REPO_ROOT, BanyanServer, serve_for_module

selenium = pytest.importorskip("selenium", reason="tools/requirements.txt installs selenium")
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = os.environ.get("BANYAN_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("BANYAN_CHROMEDRIVER", "/usr/bin/chromedriver")
DATASET = Path(os.environ.get("BANYAN_DATASETS", str(REPO_ROOT.parent / "shared" / "datasets"))) / "git-dag.jsonl.zst"
ARTIFACTS = Path(os.environ.get("BANYAN_ARTIFACTS", str(REPO_ROOT / ".build" / "artifacts" / "dashboard")))
WAIT_S = 20

# The git/git merge commit the graph tests look at (id 325 once imported: ids follow the file).
MERGE_KEY = "d0d0d0bd3c2c4591ffbc292d7e082e8ad8f2057f"


def json_post(url: str, body, **kwargs) -> requests.Response:
    return requests.post(url, json=body, timeout=10, **kwargs)


@pytest.fixture(scope="module")
def browser():
    for path in (CHROMIUM, CHROMEDRIVER):
        assert Path(path).exists(), f"{path} is missing: tools/setup-debian.sh --tests installs chromium and chromium-driver"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT_S)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def git_server(request, banyan_bin, tmp_path_factory) -> BanyanServer:
    """A server over the imported git/git graph, with the workflow API (so /ui/runs has runs)."""
    assert DATASET.exists(), f"the git/git dataset is missing at {DATASET} (set BANYAN_DATASETS)"
    base = tmp_path_factory.mktemp("dashboard-git")
    subprocess.run([str(banyan_bin), "import", str(DATASET), "--data-dir", str(base / "data")],
                   check=True, capture_output=True, timeout=300)
    yield from serve_for_module(request, BanyanServer(banyan_bin, base / "data", base / "git.log", ("--workflows",)))


@pytest.fixture(autouse=True)
def fresh_console(request):
    """The browser is shared by the module: each test reads only its own console messages."""
    if "browser" in request.fixturenames:
        request.getfixturevalue("browser").get_log("browser")
    yield


def open_page(driver, url: str, ready: str = 'main[data-ready="true"]'):
    driver.get(url)
    WebDriverWait(driver, WAIT_S).until(lambda d: d.find_elements(By.CSS_SELECTOR, ready))
    return driver


def console_errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]


def shoot(driver, name: str) -> Path:
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    assert path.stat().st_size > 1000
    return path


def event_id(server: BanyanServer, key: str) -> int:
    return requests.get(f"{server.url}/v1/events/by-key/{key}", timeout=10).json()["id"]


# ---------------------------------------------------------------------------------------------


def test_every_page_loads_without_console_errors(browser, git_server):
    merge = event_id(git_server, MERGE_KEY)
    diamond = (REPO_ROOT / "examples" / "workflows" / "diamond.yaml").read_text()
    assert requests.post(git_server.url + "/v1/workflows", data=diamond.encode(), headers={"Content-Type": "application/yaml"}, timeout=10).status_code == 201
    run = json_post(f"{git_server.url}/v1/workflows/diamond/runs", {"inputs": {"base": 3}}).json()["run"]
    deadline = time.monotonic() + WAIT_S
    while requests.get(f"{git_server.url}/v1/runs/{run}", timeout=10).json()["state"] != "completed":
        assert time.monotonic() < deadline, "the diamond run did not complete"
        time.sleep(0.2)
    pages = {
        "overview": "/ui/",
        "tail": "/ui/tail",
        "query": "/ui/query?q=" + requests.utils.quote(f'ancestors({merge}, depth <= 4) where type = "merge"'),
        "event": f"/ui/events/{merge}",
        "event-by-key": f"/ui/events/by-key/{MERGE_KEY}",
        "runs": "/ui/runs",
        "run": f"/ui/runs/{run}",
        "maintenance": "/ui/maintenance",
    }
    browser.get_log("browser")
    for width, suffix in ((1280, ""), (390, "-phone")):
        browser.set_window_size(width, 900)
        for name, path in pages.items():
            open_page(browser, git_server.url + path)
            # Give late requests (a lineage query, a poll's follow-up reads) time to fail loudly.
            time.sleep(0.3)
            errors = console_errors(browser)
            assert errors == [], f"{path} at {width}px: {errors}"
            assert browser.execute_script("return document.body.dataset.page") != "missing", path
            assert not browser.find_elements(By.CSS_SELECTOR, "main .error"), \
                f"{path}: {[e.text for e in browser.find_elements(By.CSS_SELECTOR, 'main .error')]}"
            # Nothing wider than the window: readable without scrolling sideways.
            overflow = browser.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 1, f"{path} at {width}px is {overflow}px too wide"
            shoot(browser, name + suffix)
    browser.set_window_size(1280, 900)


def test_overview_shows_the_node_and_counts_ingest(browser, git_server):
    before = requests.get(git_server.url + "/v1/status", timeout=10).json()["last_id"]
    open_page(browser, git_server.url + "/ui/")
    # The cards are redrawn every poll: read them in one go, in the page.
    cards = browser.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('.card')].map(c => [c.dataset.card, c.innerText]))")
    after = requests.get(git_server.url + "/v1/status", timeout=10).json()["last_id"]
    assert "leader" in cards["role"]
    # The workflow engine of this server appends its own events meanwhile: the card holds a last id of the moment.
    shown = int(cards["last_id"].split()[-1].replace(",", ""))
    assert before <= shown <= after
    # The chart gets a sample per poll; appending moves the rate above zero.
    WebDriverWait(browser, WAIT_S).until(lambda d: int(d.find_element(By.ID, "ingest-chart").get_attribute("data-samples") or 0) >= 1)
    json_post(git_server.url + "/v1/events", [{"type": "dashboard.probe"} for _ in range(50)])
    WebDriverWait(browser, WAIT_S).until(lambda d: d.find_element(By.ID, "ingest-rate").text not in ("0/s now", "measuring…", "–"))
    assert browser.find_elements(By.CSS_SELECTOR, "#ingest-chart polyline.rate")


def test_the_lineage_graph_of_a_merge_shows_its_parents_and_clicks_navigate(browser, git_server):
    merge = event_id(git_server, MERGE_KEY)
    parents = requests.get(f"{git_server.url}/v1/events/{merge}", timeout=10).json()["parents"]
    assert len(parents) == 2
    open_page(browser, f"{git_server.url}/ui/events/{merge}", '.graph-area[data-drawn="true"]')
    focus = browser.find_element(By.CSS_SELECTOR, "g.node.focus")
    assert int(focus.get_attribute("data-event-id")) == merge
    drawn = {int(n.get_attribute("data-event-id")) for n in browser.find_elements(By.CSS_SELECTOR, "g.node")}
    assert set(parents) <= drawn
    # Ancestors to depth 3 and descendants to depth 3, exactly as the query language counts them.
    expected = 1 + sum(
        json_post(git_server.url + "/v1/query", {"query": f"count({d}({merge}, depth <= 3))"}).json()["count"]
        for d in ("ancestors", "descendants"))
    assert len(drawn) == expected
    # Every parent is drawn above its child: ids are a topological order, layers follow them.
    y = {int(n.get_attribute("data-event-id")): n.rect["y"] for n in browser.find_elements(By.CSS_SELECTOR, "g.node")}
    assert all(y[p] < y[merge] for p in parents)

    browser.execute_script("document.querySelector('.graph-area').scrollIntoView()")
    target = browser.find_element(By.CSS_SELECTOR, f'g.node[data-event-id="{parents[0]}"]')
    target.click()
    WebDriverWait(browser, WAIT_S).until(lambda d: d.current_url.endswith(f"/ui/events/{parents[0]}"))
    WebDriverWait(browser, WAIT_S).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, f'g.node.focus[data-event-id="{parents[0]}"]'))
    assert browser.find_element(By.TAG_NAME, "h1").text.startswith(f"Event #{parents[0]}")
    # Back returns to the merge.
    browser.back()
    WebDriverWait(browser, WAIT_S).until(lambda d: d.find_elements(By.CSS_SELECTOR, f'g.node.focus[data-event-id="{merge}"]'))


def test_two_selected_nodes_show_the_path_between_them(browser, git_server):
    merge = event_id(git_server, MERGE_KEY)
    open_page(browser, f"{git_server.url}/ui/events/{merge}", '.graph-area[data-drawn="true"]')
    browser.execute_script("document.querySelector('.graph-area').scrollIntoView()")
    top = min(int(n.get_attribute("data-event-id")) for n in browser.find_elements(By.CSS_SELECTOR, "g.node"))
    path = json_post(git_server.url + "/v1/query", {"query": f"path({top}, {merge})"}).json()["paths"][0]
    for node_id in (top, merge):
        node = browser.find_element(By.CSS_SELECTOR, f'g.node[data-event-id="{node_id}"]')
        ActionChains(browser).key_down(Keys.SHIFT).click(node).key_up(Keys.SHIFT).perform()
    WebDriverWait(browser, WAIT_S).until(lambda d: "Path from" in d.find_element(By.CSS_SELECTOR, ".path-info").text)
    on_path = [int(n.get_attribute("data-event-id")) for n in browser.find_elements(By.CSS_SELECTOR, "g.node.on-path")]
    assert sorted(on_path) == sorted(path)
    assert len(browser.find_elements(By.CSS_SELECTOR, "path.edge.on-path")) == len(path) - 1
    assert browser.current_url.endswith(f"/ui/events/{merge}"), "shift-click selects, it does not navigate"
    shoot(browser, "event-path")


def test_large_fan_outs_fold_and_expand(browser, server):
    root = json_post(server.url + "/v1/events", [{"type": "fan.root", "key": "root"}]).json()["results"][0]["id"]
    json_post(server.url + "/v1/events", [{"type": "fan.child", "parent_keys": ["root"]} for _ in range(30)])
    open_page(browser, f"{server.url}/ui/events/{root}?down=1", '.graph-area[data-drawn="true"]')
    assert len(browser.find_elements(By.CSS_SELECTOR, "g.node")) == 1 + 12
    more = browser.find_element(By.CSS_SELECTOR, "g.more")
    assert more.text.strip() == "+18 more"
    browser.execute_script("document.querySelector('.graph-area').scrollIntoView()")
    more.click()
    WebDriverWait(browser, WAIT_S).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "g.node")) == 31)
    assert not browser.find_elements(By.CSS_SELECTOR, "g.more")


def test_query_console_pages_results_and_points_at_errors(browser, git_server):
    merge = event_id(git_server, MERGE_KEY)
    text = f"ancestors({merge}, depth <= 40)"
    expected = json_post(git_server.url + "/v1/query", {"query": text, "page_size": 1000}).json()["results"]
    assert 40 < len(expected) < 1000
    open_page(browser, git_server.url + "/ui/query?q=" + requests.utils.quote(text))
    output = browser.find_element(By.ID, "query-output")
    WebDriverWait(browser, WAIT_S).until(lambda d: output.get_attribute("data-state") == "done")
    from selenium.webdriver.support.ui import Select
    Select(browser.find_element(By.ID, "page-size")).select_by_value("20")
    browser.find_element(By.ID, "run").click()
    seen = []
    for page in range(1, 10):
        WebDriverWait(browser, WAIT_S).until(
            lambda d: d.find_element(By.ID, "query-output").get_attribute("data-state") == "done"
            and d.find_element(By.CSS_SELECTOR, "#query-output .pager").text.startswith(f"page {page}"))
        rows = browser.find_elements(By.CSS_SELECTOR, "#query-output table.results tbody tr")
        seen += [int(r.find_element(By.CSS_SELECTOR, "a.eid").text.lstrip("#")) for r in rows]
        nexts = browser.find_elements(By.ID, "next")
        if not nexts:
            break
        nexts[0].click()
    assert seen == [e["id"] for e in expected], "the pages add up to the whole answer, in order"
    assert "visited" in browser.find_element(By.CSS_SELECTOR, "#query-output .stats").text

    # A bad query: the error names its line and column and the caret is put there.
    box = browser.find_element(By.ID, "query-text")
    box.clear()
    box.send_keys("ancestors(1)\nwhere typo = 3")
    box.send_keys(Keys.CONTROL, Keys.ENTER)
    error = WebDriverWait(browser, WAIT_S).until(lambda d: d.find_element(By.ID, "query-error"))
    server_error = json_post(git_server.url + "/v1/query", {"query": "ancestors(1)\nwhere typo = 3"}).json()
    assert (int(error.get_attribute("data-line")), int(error.get_attribute("data-column"))) == (server_error["line"], server_error["column"])
    assert server_error["line"] == 2
    caret = browser.execute_script("return document.getElementById('query-text').selectionStart")
    assert caret == len("ancestors(1)\n") + server_error["column"] - 1
    assert server_error["detail"].splitlines()[0] in error.text
    shoot(browser, "query-error")

    # Explain shows the plan; an event answer opens as a graph.
    box.clear()
    box.send_keys(text)
    browser.find_element(By.ID, "explain").click()
    WebDriverWait(browser, WAIT_S).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#query-output pre.plan"))
    browser.find_element(By.ID, "run").click()
    WebDriverWait(browser, WAIT_S).until(lambda d: d.find_elements(By.ID, "as-graph"))
    browser.find_element(By.ID, "as-graph").click()
    WebDriverWait(browser, WAIT_S).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#query-output svg.graph g.node"))
    assert len(browser.find_elements(By.CSS_SELECTOR, "#query-output svg.graph g.node")) == len(expected)


def test_query_examples_come_from_the_docs(browser, git_server):
    open_page(browser, git_server.url + "/ui/query")
    text = (REPO_ROOT / "docs" / "QUERY_LANGUAGE.md").read_text()
    docs = text[text.index("## Examples"):text.index("## Grammar")]
    examples = [b.get_attribute("textContent") for b in browser.find_elements(By.CSS_SELECTOR, "button.example")]
    assert len(examples) >= 8
    for example in examples:
        assert example in docs, example


def test_tail_shows_new_events_within_a_second_and_resumes_without_gaps(browser, server):
    json_post(server.url + "/v1/events", [{"type": "before"}])
    open_page(browser, server.url + "/ui/tail")
    state = browser.find_element(By.ID, "tail-state")
    WebDriverWait(browser, WAIT_S).until(lambda d: state.get_attribute("data-state") == "live")

    def rows():
        return [int(r.get_attribute("data-event-id")) for r in browser.find_elements(By.CSS_SELECTOR, "#tail-rows tr[data-event-id]")]

    posted = time.time() * 1000
    sent = json_post(server.url + "/v1/events", [{"type": "tail.one", "stream": "s1"}]).json()["results"][0]["id"]
    WebDriverWait(browser, WAIT_S).until(lambda d: sent in rows())
    # Measured by the page itself (the row's data-shown-at), not through selenium's round trips.
    shown_at = int(browser.find_element(By.CSS_SELECTOR, f'#tail-rows tr[data-event-id="{sent}"]').get_attribute("data-shown-at"))
    assert shown_at - posted < 1000, f"the event showed {shown_at - posted:.0f} ms after it was sent"

    # The skip link moves focus within the page; it does not draw the page again.
    browser.find_element(By.CSS_SELECTOR, "a.skip").send_keys(Keys.ENTER)
    assert browser.current_url.endswith("/ui/tail#main")
    assert sent in rows() and state.get_attribute("data-state") == "live"

    # The server goes away (kill -9) and comes back on the same port: the page reconnects with
    # Last-Event-ID and shows what was appended meanwhile, each event once.
    server.kill9()
    WebDriverWait(browser, WAIT_S).until(lambda d: state.get_attribute("data-state") == "reconnecting")
    port = server.port
    server.start()
    assert server.port == port, "the port was taken meanwhile; the test needs the same address"
    after = [r["id"] for r in json_post(server.url + "/v1/events", [{"type": "tail.two"}, {"type": "tail.three"}]).json()["results"]]
    WebDriverWait(browser, WAIT_S).until(lambda d: set(after) <= set(rows()))
    shown = rows()
    # The server resumed after the last event shown (Last-Event-ID): it sent none of them again.
    assert state.get_attribute("data-replayed") == "0"
    assert len(shown) == len(set(shown)), "no event twice"
    assert sorted(shown, reverse=True) == shown, "newest first, in order"
    assert set(range(min(shown), max(shown) + 1)) <= set(shown), "no gap"

    # Pause stops the rows; resume brings what came meanwhile.
    browser.find_element(By.ID, "pause").click()
    WebDriverWait(browser, WAIT_S).until(lambda d: state.get_attribute("data-state") == "paused")
    paused = [r["id"] for r in json_post(server.url + "/v1/events", [{"type": "tail.paused"}]).json()["results"]]
    time.sleep(0.5)
    assert paused[0] not in rows()
    browser.find_element(By.ID, "pause").click()
    WebDriverWait(browser, WAIT_S).until(lambda d: paused[0] in rows())

    # A filter by type shows only that type.
    type_box = browser.find_element(By.NAME, "type")
    type_box.send_keys("tail.filtered")
    type_box.send_keys(Keys.ENTER)
    WebDriverWait(browser, WAIT_S).until(lambda d: "type=tail.filtered" in d.current_url and state.get_attribute("data-state") == "live")
    wanted = json_post(server.url + "/v1/events", [{"type": "tail.other"}, {"type": "tail.filtered"}]).json()["results"][1]["id"]
    WebDriverWait(browser, WAIT_S).until(lambda d: wanted in rows())
    types = {c.text for c in browser.find_elements(By.CSS_SELECTOR, "#tail-rows td:nth-child(3)")}
    assert types == {"tail.filtered"}


def test_a_server_with_tokens_asks_for_one_and_shows_what_the_role_may_not_do(browser, server_factory):
    srv = server_factory(env={"BANYAN_TOKENS": "reader-token:read,admin-token:admin"})
    browser.get(srv.url + "/ui/maintenance")
    browser.execute_script("sessionStorage.clear()")
    open_page(browser, srv.url + "/ui/", "dialog#token-dialog[open]")
    shoot(browser, "token-prompt")
    box = browser.find_element(By.ID, "token-input")
    box.send_keys("reader-token")
    box.send_keys(Keys.ENTER)
    WebDriverWait(browser, WAIT_S).until(lambda d: d.find_elements(By.CSS_SELECTOR, '.card[data-card="role"]'))
    assert not browser.find_elements(By.CSS_SELECTOR, "dialog#token-dialog[open]")
    # The read role may not see maintenance jobs: the page says so instead of failing silently.
    jobs = WebDriverWait(browser, WAIT_S).until(lambda d: d.find_element(By.CSS_SELECTOR, '#jobs .error[data-status="403"]'))
    assert "may not" in jobs.text
    assert browser.execute_script("return sessionStorage.getItem('banyan.token')") == "reader-token"
    # A wrong token is asked again; cancelling stops the asking, also on a page that polls,
    # until the header's button asks for one.
    browser.execute_script("sessionStorage.setItem('banyan.token', 'wrong')")
    open_page(browser, srv.url + "/ui/", "dialog#token-dialog[open]")
    browser.find_element(By.ID, "token-cancel").click()
    WebDriverWait(browser, WAIT_S).until(lambda d: d.find_elements(By.CSS_SELECTOR, '#cards .error[data-status="401"]'))
    time.sleep(4.5)  # two polls of the overview
    assert not browser.find_elements(By.CSS_SELECTOR, "dialog#token-dialog[open]")
    button = browser.find_element(By.ID, "token-button")
    assert button.is_displayed() and button.text == "Enter token"
    button.click()
    WebDriverWait(browser, WAIT_S).until(lambda d: d.find_elements(By.CSS_SELECTOR, "dialog#token-dialog[open]"))
    browser.execute_script("sessionStorage.clear()")


def test_a_run_page_draws_the_task_graph_and_its_buttons_act(browser, server_factory):
    srv = server_factory(["--workflows"])
    gate = "name: gate\ntasks:\n  - {id: approve, kind: wait_for_signal, signal: approval}\n  - {id: nap, kind: sleep, needs: [approve], duration: 60s}\n"
    assert requests.post(srv.url + "/v1/workflows", data=gate.encode(), headers={"Content-Type": "application/yaml"}, timeout=10).status_code == 201
    run = json_post(f"{srv.url}/v1/workflows/gate/runs", {"inputs": {}}).json()["run"]

    open_page(browser, srv.url + "/ui/runs")
    WebDriverWait(browser, WAIT_S).until(lambda d: d.find_elements(By.CSS_SELECTOR, f'#runs-rows tr[data-run="{run}"]'))
    browser.find_element(By.CSS_SELECTOR, f'#runs-rows tr[data-run="{run}"] a').click()
    WebDriverWait(browser, WAIT_S).until(lambda d: d.current_url.endswith(f"/ui/runs/{run}"))
    WebDriverWait(browser, WAIT_S).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, '#run-dag g.task[data-task="approve"][data-state="started"]'))
    assert browser.find_element(By.CSS_SELECTOR, '#run-dag g.task[data-task="nap"]').get_attribute("data-state") == "pending"
    edges = [(e.get_attribute("data-from"), e.get_attribute("data-to")) for e in browser.find_elements(By.CSS_SELECTOR, "#run-dag path.edge")]
    assert edges == [("approve", "nap")]

    # Signal through the page: the waiting task completes and the next one starts.
    browser.find_element(By.ID, "run-signal").click()
    browser.find_element(By.ID, "signal-name").send_keys("approval")
    payload = browser.find_element(By.ID, "signal-payload")
    payload.clear()
    payload.send_keys('{"ok": true}')
    browser.find_element(By.ID, "signal-send").click()
    WebDriverWait(browser, WAIT_S).until(lambda d: d.find_element(By.ID, "run-action-result").get_attribute("data-outcome") == "ok")
    WebDriverWait(browser, WAIT_S).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, '#run-dag g.task[data-task="nap"][data-state="started"]'))
    assert browser.find_elements(By.CSS_SELECTOR, '#run-timeline .tl-row[data-task="approve"][data-state="completed"]')
    shoot(browser, "run-signalled")

    # Cancel with a reason: the run ends cancelled, with the reason as its error.
    browser.find_element(By.ID, "run-cancel").click()
    browser.find_element(By.ID, "cancel-reason").send_keys("not today")
    browser.find_element(By.ID, "cancel-confirm").click()
    WebDriverWait(browser, WAIT_S).until(lambda d: d.find_element(By.CSS_SELECTOR, "main .view").get_attribute("data-run-state") == "cancelled")
    assert requests.get(f"{srv.url}/v1/runs/{run}", timeout=10).json()["error"] == "not today"
    assert not browser.find_element(By.ID, "run-pause").is_enabled()
    assert console_errors(browser) == []


def test_maintenance_lists_snapshots_and_compactions(browser, server):
    json_post(server.url + "/v1/events", [{"type": "m", "payload": {"n": i}} for i in range(20)])
    snapshot = requests.post(server.url + "/v1/admin/snapshots", timeout=60).json()["snapshot"]
    compaction = json_post(server.url + "/v1/admin/compactions", {"before": 10}).json()
    open_page(browser, server.url + "/ui/maintenance")
    WebDriverWait(browser, WAIT_S).until(lambda d: d.find_elements(By.CSS_SELECTOR, f'#snapshot-list tr[data-name="{snapshot["name"]}"]'))
    types = [r.get_attribute("data-type") for r in browser.find_elements(By.CSS_SELECTOR, "#maint-events tr[data-event-id]")]
    expected = [e["type"] for e in requests.get(server.url + "/v1/events", params={"stream": "banyan.maintenance", "limit": 100}, timeout=10).json()["events"]]
    assert types == list(reversed(expected)), "newest first, every maintenance event"
    assert {"banyan.snapshot.finished", "banyan.compaction.finished"} <= set(types)
    finished = browser.find_element(By.CSS_SELECTOR, '#maint-events tr[data-type="banyan.compaction.finished"]').text
    assert f"{compaction['compacted']}" in finished
    jobs = [r.get_attribute("data-state") for r in browser.find_elements(By.CSS_SELECTOR, "#job-list tr[data-job]")]
    assert jobs == ["finished", "finished"]
    shoot(browser, "maintenance-jobs")


def test_the_overview_shows_followers_and_their_lag(browser, server_factory):
    leader = server_factory(name="leader")
    follower = server_factory(name="follower", extra_args=["--follow", leader.url])
    json_post(leader.url + "/v1/events", [{"type": "replicated"} for _ in range(10)])
    open_page(browser, leader.url + "/ui/")
    row = WebDriverWait(browser, WAIT_S).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#replication table.results tbody tr"))[0]
    status = requests.get(leader.url + "/v1/status", timeout=10).json()
    assert [f["url"] for f in status["followers"]] == [row.find_elements(By.TAG_NAME, "td")[0].text]
    WebDriverWait(browser, WAIT_S).until(
        lambda d: d.find_element(By.CSS_SELECTOR, "#replication tbody tr td:nth-child(2)").text == f"{status['last_id']:,}")
    # The follower's own overview says whom it follows and how far behind it is.
    open_page(browser, follower.url + "/ui/")
    WebDriverWait(browser, WAIT_S).until(lambda d: "behind by 0 ids" in d.find_element(By.ID, "replication").text)
    assert f"Following {leader.url}" in browser.find_element(By.ID, "replication").text
    assert browser.find_element(By.CSS_SELECTOR, '.card[data-card="role"]').text.endswith("follower")
