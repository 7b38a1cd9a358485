"""The snippet in a real browser: Debian's chromium driven by Playwright (never a downloaded
browser), against ``revsync serve``'s app on loopback, on a clock the test sets. Run by
``test_collector_browser.py`` in a process of its own, with a deadline."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from revsync.destinations.pii import normalize_email, sha256_hex
from revsync.store.engine import open_store
from revsync.store.schema import identities, touchpoints
from tests.e2e.collector_site import CHROMIUM_ARGS, UA, Site, running_site

CHROMIUM = "/usr/bin/chromium"
T0 = datetime(2026, 3, 9, 14, 0, tzinfo=UTC)

if not Path(CHROMIUM).exists() and not os.environ.get("CI"):
    pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)", allow_module_level=True)

from playwright.sync_api import Browser, BrowserContext, sync_playwright  # noqa: E402


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # The browser keeps the real clock (.ci/clock-ahead preloads libfaketime, under which
    # chromium crawls); the pages' clock is Playwright's, set by each test.
    faked = {k: os.environ.pop(k) for k in ("LD_PRELOAD", "FAKETIME") if k in os.environ}
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
            os.environ.update(faked)
            yield browser
            browser.close()
    finally:
        os.environ.update(faked)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    engine = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    with running_site(engine, T0) as running:
        yield running
    engine.dispose()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(user_agent=UA)  # HeadlessChrome is dropped as a bot
    context.clock.install(time=T0)
    yield context
    context.close()


def wait_for(check: Callable[[], Any], seconds: float = 5.0) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def count(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def visit(context: BrowserContext, site: Site, at: datetime, path: str = "/") -> Any:
    """Open ``path`` at ``at`` on both clocks (page and collector)."""
    site.clock.now = at
    context.clock.set_system_time(at)
    page = context.new_page()
    page.goto(site.page + path)
    page.wait_for_function("() => window.revsync && window.revsync.v === 1")
    return page


def test_a_paid_click_then_a_form_lead_then_a_new_session(
    context: BrowserContext, site: Site
) -> None:
    page = visit(context, site, T0, "/?gclid=TeSt-gclid_123&utm_source=google&utm_medium=cpc")
    assert wait_for(lambda: count(site.engine, touchpoints) == 1)
    with site.engine.connect() as conn:
        tp = conn.execute(select(touchpoints)).mappings().one()
    assert tp["gclid"] == "TeSt-gclid_123" and tp["channel"] == "Paid Search"
    assert (tp["source"], tp["medium"]) == ("google", "cpc")
    assert tp["consent_ad_user_data"] is True and tp["occurred_at"] == T0
    cookies = {c["name"]: c for c in context.cookies()}
    assert cookies["_rsid"]["value"] == tp["visitor_id"]  # set by the collector, kept by JS
    # two years asked; Chrome keeps any cookie at most 400 days. Measured against a 1-day
    # cookie, both dated by the browser's own (real) clock:
    page.evaluate("document.cookie = 'ref=1; max-age=86400; path=/'")
    day = {c["name"]: c["expires"] for c in context.cookies()}["ref"]
    assert cookies["_rsid"]["expires"] - day > 398 * 86400
    assert cookies["_rsid"]["sameSite"] == "Lax"

    page.fill("input[name=email]", " Ada.Lovelace@Example.com")
    page.fill("input[name=phone]", "+1 415 555 0100")
    page.click("button")
    page.wait_for_load_state()
    assert wait_for(lambda: count(site.engine, identities) == 1)
    with site.engine.connect() as conn:
        lead = conn.execute(select(identities)).mappings().one()
    assert lead["visitor_id"] == tp["visitor_id"] and lead["event"] == "form"
    assert lead["email_sha256"] == sha256_hex(normalize_email("ada.lovelace@example.com"))
    assert lead["phone_sha256"] == sha256_hex("+14155550100") and lead["email"] is None
    page.close()

    # 10 minutes on: the same session (the thanks page above kept it alive at T0)
    visit(context, site, T0 + timedelta(minutes=10)).close()
    time.sleep(0.3)
    assert count(site.engine, touchpoints) == 1
    # 31 minutes after the last page: a new session, a new (direct) touchpoint
    visit(context, site, T0 + timedelta(minutes=41)).close()
    assert wait_for(lambda: count(site.engine, touchpoints) == 2)
    with site.engine.connect() as conn:
        second = conn.execute(
            select(touchpoints).order_by(touchpoints.c.occurred_at.desc())
        ).mappings().first()
    assert second is not None and second["visitor_id"] == tp["visitor_id"]
    assert second["channel"] == "Direct" and second["occurred_at"] == T0 + timedelta(minutes=41)


def test_a_fbclid_landing_creates_fbc_in_metas_format(context: BrowserContext, site: Site) -> None:
    visit(context, site, T0, "/?fbclid=IwAR2xyz_ABC").close()
    assert wait_for(lambda: count(site.engine, touchpoints) == 1)
    fbc = {c["name"]: c["value"] for c in context.cookies()}["_fbc"]
    prefix, fb, created, fbclid = fbc.split(".", 3)
    assert (prefix, fb, fbclid) == ("fb", "1", "IwAR2xyz_ABC")  # fbclid verbatim
    assert 0 <= int(created) - T0.timestamp() * 1000 < 60_000  # ms on the page's clock
    with site.engine.connect() as conn:
        assert conn.execute(select(touchpoints.c.fbc)).scalar_one() == fbc


def test_consent_denied_sends_and_sets_nothing(context: BrowserContext, site: Site) -> None:
    sent: list[str] = []
    context.on("request", lambda r: sent.append(r.url) if "/v1/" in r.url and r.method == "POST" else None)
    page = visit(context, site, T0, "/denied?gclid=TeSt-gclid_456")
    page.evaluate("revsync.identify({email: 'ada@example.com'})")
    page.close()
    strict = visit(context, site, T0, "/strict?gclid=TeSt-gclid_789")
    strict.evaluate("revsync.identify({email: 'ada@example.com'})")
    time.sleep(0.3)
    assert sent == [] and count(site.engine, touchpoints) == 0
    assert [c["name"] for c in context.cookies()] == []
    # consent given on the strict site: the session and the waiting lead go out
    strict.evaluate("revsync.consent({analytics_storage: 'granted', ad_user_data: 'granted'})")
    assert wait_for(lambda: count(site.engine, identities) == 1)
    assert count(site.engine, touchpoints) == 1
    assert "_rsid" in [c["name"] for c in context.cookies()]


DEALS = """deal_id,status,stage,amount,currency,close_date,modified_at,pipeline,owner,contact_id,email,phone,is_primary,gclid
D-1,won,Closed Won,12000.00,USD,{close},{modified},sales,ann,C-1,grace@example.com,,true,
"""
MAPPING = """
version: 1
sources:
  - {name: crm, type: file, path: deals.csv, timezone: UTC, close_time: "17:00"}
destinations:
  - {name: google-ads, type: google_ads, transport: file, output_dir: out,
     customer_id: "123-456-7890", conversion_action: "987654321", account_timezone: UTC}
"""


def test_a_captured_visitor_flows_through_sync_to_a_conversion(
    context: BrowserContext, site: Site, tmp_path: Path
) -> None:
    """From the browser's click to the conversion the sync plans for Google Ads."""
    import json

    from revsync.config.loader import load_config
    from revsync.store.schema import conversions
    from tests.e2e.test_sync import run

    page = visit(context, site, T0, "/?gclid=E2E-gclid_0001&utm_source=google&utm_medium=cpc")
    assert wait_for(lambda: count(site.engine, touchpoints) == 1)
    page.fill("input[name=email]", "Grace@Example.com")
    page.click("button")
    assert wait_for(lambda: count(site.engine, identities) == 1)
    page.close()

    close = T0 + timedelta(days=5)
    (tmp_path / "deals.csv").write_text(
        DEALS.format(close=close.date().isoformat(), modified=close.isoformat())
    )
    (tmp_path / "revsync.yaml").write_text(MAPPING)
    summary = run(site.engine, load_config(tmp_path / "revsync.yaml"), now=T0 + timedelta(days=6))
    assert summary.deals_matched == 1 and summary.planned == {"google-ads": 1}
    with site.engine.connect() as conn:
        row = conn.execute(select(conversions)).mappings().one()
    assert row["state"] == "sent" and float(row["value"]) == 12000.0
    [request] = [json.loads(line) for line in (tmp_path / "out").glob("*.jsonl").__next__().read_text().splitlines()]
    [conversion] = request["body"]["conversions"]
    assert conversion["gclid"] == "E2E-gclid_0001"
