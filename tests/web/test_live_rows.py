"""A running change's page keeps up with its device rows under a slow browser: every
server-sent row update lands, however fast they come, and the row shows the last one.

The rows were once swapped whole (`outerHTML`): between a row's removal and its successor's
registration htmx's SSE extension had no listener for that row, and an update arriving then
was lost. A loaded CI machine's browser left the seed story's vZTX `committing` on the page
for 120 s after the store had it `confirmed`. Chromium is slowed here through the DevTools
protocol (Emulation.setCPUThrottlingRate) to open that window wide."""

from __future__ import annotations

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from microseg.policyfile import load_policy
from microseg.store import PlannedDevice
from support import EXAMPLES

pytestmark = pytest.mark.slow
UPDATES = 40


def test_every_row_update_reaches_a_slow_browser(served, browser):
    store = served.store
    store.import_policy(load_policy(EXAMPLES / "home-lab.yaml"), "alice", "seed")
    devices = [PlannedDevice("andreas-ztx1", "eos", "", ""), PlannedDevice("sw", "eos", "", "")]
    change = store.changes.create(1, None, "alice", "rows", devices)
    from microseg.deploy.changes import runner_identity

    store.changes.transition(
        change, ["pending-approval"], "running", "bob", "run", runner=runner_identity()
    )

    context = browser.new_context()
    page = context.new_page()
    page.goto(served.url + "/login")
    page.fill("#f-username", "bob")
    page.fill("#f-password", served.passwords["bob"])
    page.click("button[type=submit]")
    page.wait_for_url(served.url + "/")
    cdp = context.new_cdp_session(page)
    cdp.send("Emulation.setCPUThrottlingRate", {"rate": 30})
    page.goto(f"{served.url}/changes/{change}")
    page.locator("tr.progress-row").nth(0).wait_for()
    page.wait_for_timeout(1500)  # the event stream is open

    for step in range(UPDATES):
        state = "confirmed" if step == UPDATES - 1 else ("loading", "committing")[step % 2]
        store.changes.update_device(change, "andreas-ztx1", "bob", [f"step {step}"], state=state)
    row = page.locator("tr.progress-row").nth(0)
    try:
        row.locator(f"text=step {UPDATES - 1}").wait_for(timeout=60_000)
    except PlaywrightTimeout:
        raise AssertionError(f"the page's row: {row.inner_text()!r}") from None
    assert row.locator(".badge").inner_text() == "confirmed"
    # The page still follows the run: the other row updates too.
    store.changes.update_device(change, "sw", "bob", ["sw step"], state="loading")
    page.locator("tr.progress-row").nth(1).locator("text=sw step").wait_for(timeout=60_000)
    context.close()
