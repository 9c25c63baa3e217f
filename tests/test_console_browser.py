"""The ops console in a real browser: Debian's chromium (scripts/install-chromium.sh, run by
`make test`) driven by Playwright on that executable, against a whole local stack (Redis, both
sandboxes, a real worker). Log in, see the unhealthy connection, pause another and see its next
job wait, open the dead letter, fix the product in the Zoho sandbox, replay, see the invoice in
the Xero sandbox; resume and see the waiting job go through; add a connection on the settings
page and remove it.

ZXS_UPDATE_SCREENSHOT=1 also writes the screenshot to docs/console.png (shown in the README).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from console.local import start_local_console
from sandbox.seed import build_dataset, load_dataset
from workers.history import RecordHistory, record_key
from workers.pipeline import submit_records
from workers.redis import get_redis
from zxsync.demo import fix_planted_product, plant_invalid_invoice

pytestmark = pytest.mark.integration
ROOT = Path(__file__).parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        done = subprocess.run([str(ROOT / "scripts" / "install-chromium.sh")], check=False)
        if done.returncode or not CHROMIUM.exists():
            pytest.fail("no /usr/bin/chromium: run scripts/install-chromium.sh as root")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


def test_an_operator_fixes_and_replays_a_dead_letter_and_pauses_a_connection_in_a_browser(
    browser: Any,
    make_stack: Callable[..., Any],
    wait_for_outcomes: Callable[..., Any],
    tmp_path: Path,
) -> None:
    stack = make_stack(tenants=2)
    a, b = stack.connections
    small: dict[str, Any] = {"invoices": 1, "accounts": 1, "products": 2}
    dataset = load_dataset(stack.zoho, a.zoho_org_id, build_dataset(**small))
    bad = plant_invalid_invoice(stack, dataset, a.zoho_org_id, "ZINV-BROWSER-1")
    b_invoice = str(
        load_dataset(stack.zoho, b.zoho_org_id, build_dataset(**small)).invoices[0]["id"]
    )
    stack.start_worker(concurrency=1)
    submit_records(a.name, [bad], "browser")
    bad_key = record_key(a.name, "Invoices", bad)
    assert wait_for_outcomes(a.name, [bad_key])[bad_key][0] == "failed"
    server, password = start_local_console("olga")
    try:
        page = browser.new_page(viewport={"width": 1500, "height": 700})
        page.goto(f"{server.url}/")
        assert "/login" in page.url
        page.fill("input[name=user]", "olga")
        page.fill("input[name=password]", password)
        page.click("button[type=submit]")
        row_a = page.locator(f'tr[data-connection="{a.name}"]')
        row_b = page.locator(f'tr[data-connection="{b.name}"]')
        assert "unhealthy" in row_a.get_attribute("class")
        assert "1 dead letter(s)" in row_a.inner_text()
        assert row_b.locator(".badge").inner_text() == "healthy"

        # pause b: its next job waits in Redis
        row_b.locator("button[name=pause]").click()
        assert row_b.locator(".paused").is_visible()
        submit_records(b.name, [b_invoice], "browser-paused")

        def b_waits() -> bool:
            page.reload()
            return row_b.locator(".waiting").inner_text() == "1"

        wait_until(b_waits, 30, "b's job to wait")
        b_key = record_key(b.name, "Invoices", b_invoice)
        assert b_key not in RecordHistory(get_redis()).outcomes(b.name)
        shot = tmp_path / "console.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        if os.environ.get("ZXS_UPDATE_SCREENSHOT"):
            shutil.copy(shot, ROOT / "docs" / "console.png")

        # the dead letter: read it, fix the record in Zoho, replay
        row_a.locator("a", has_text="invalid_record").click()
        page.locator("tr.dead-letter a").first.click()
        assert "Product_Code" in page.locator(".why").inner_text()
        assert page.locator(".hint").inner_text()
        fix_planted_product(stack, a.zoho_org_id, bad)  # what `zxsync demo --console` offers
        page.click("#replay")
        page.click("#confirm")
        assert "replay done" in page.locator(".flash").inner_text()

        def in_xero() -> list[Any]:
            return [
                inv
                for inv in stack.xero.invoices(a.xero_tenant_id)
                if inv.get("Reference") == "ZINV-BROWSER-1"
            ]

        invoices = wait_until(in_xero, 60, "the replayed invoice in the Xero sandbox")
        assert len(invoices) == 1
        page.goto(f"{server.url}/")
        # healthy again, with its last successful sync ("… ago") once the replay's record is
        # through the pipeline (the invoice is in Xero before the Zoho write-back finishes it)
        wait_until(
            lambda: (
                page.reload()
                or (
                    row_a.locator(".badge").inner_text() == "healthy"
                    and "ago" in row_a.inner_text()
                )
            ),
            30,
            "a to be healthy again with a last successful sync",
        )
        page.goto(f"{server.url}/records?q=ZINV-BROWSER-1")
        timeline = page.locator("section.timeline").inner_text()
        assert invoices[0]["InvoiceNumber"] in timeline and "replay" in timeline
        xero_href = page.get_attribute("a:text('open in Xero')", "href")
        organisation = stack.xero.tenant(a.xero_tenant_id).organisation
        assert f"shortcode={organisation['ShortCode']}&" in xero_href  # GET Organisation
        assert invoices[0]["InvoiceID"] in xero_href

        # resume b: the waiting job goes through, nothing lost
        page.goto(f"{server.url}/")
        row_b.locator("button[name=resume]").click()
        assert wait_for_outcomes(b.name, [b_key])[b_key][0] == "created"

        # connection settings: the stack's own are the environment's; add one, remove it
        page.goto(f"{server.url}/connections")
        assert "ZXS_CONNECTIONS" in page.locator(f'tr[data-connection="{a.name}"]').inner_text()
        added = f"{a.name}-added"
        page.click("#add")
        for field, value in (("name", added), ("xero_tenant_id", "t"), ("zoho_org_id", "o")):
            page.fill(f"#in-{field}", value)
        page.fill("#in-xero_refresh_token", "browser-secret-refresh-token")
        page.click("#save")
        assert f"added {added}" in page.locator(".flash").inner_text()
        assert "browser-secret-refresh-token" not in page.content()
        page.locator(f'tr[data-connection="{added}"] a', has_text="Remove").click()
        page.click("#confirm")
        assert f"removed {added}" in page.locator(".flash").inner_text()
        page.goto(f"{server.url}/audit")
        audit = page.locator("table").inner_text()
        assert "pause" in audit and "resume" in audit and "replay" in audit
        assert "connections.add" in audit and "connections.remove" in audit
    finally:
        server.stop()
