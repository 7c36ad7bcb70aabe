"""The web pages served by a real uvicorn on a free 127.0.0.1 port, on both backends, with
the projection following in a thread as `serve` runs it; and a headless Debian chromium."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import uvicorn

from api.app import create_app
from application.imports import import_file
from application.ledger import CommandContext, RecordPayment
from application.reconciliation import link_counted_twice
from income_ledger.bootstrap import build_projection
from projections.runner import ProjectionRunner
from tests.api.conftest import (  # noqa: F401
    LIMITED_TOKENS,
    REFUND_LIMIT_PENCE,
    TOKENS,
    services,
    settings,
)
from tests.application.test_imports import allpay_file, allpay_line
from tests.application.test_statement_imports import camt, entry
from tests.conftest import IN_CI
from tests.domain.helpers import CT_REF
from web.app import install
from web.sessions import WebConfig

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HOW_TO_ENABLE_BROWSER = (
    "install Debian's chromium (`apt-get install -y chromium`, giving /usr/bin/chromium) and "
    "the test extras (`pip install -e '.[test]'`, which bring playwright); `.ci/run` does both"
)
SCREENSHOTS = Path(__file__).parents[2] / "docs" / "screenshots"


def screenshots_wanted(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the browser tests rewrite the committed docs/screenshots: only when asked
    in so many words (LEDGER_TEST_SCREENSHOTS=1), never by a plain run, nor by `=0`."""
    return environ.get("LEDGER_TEST_SCREENSHOTS", "").strip().lower() in ("1", "true", "yes")


IDLE_SECONDS = 2
SUSPENSE_REFERENCE = "12345678"  # fails Council Tax's check digit: held in suspense
CT_REFERENCE = "12345679"


@pytest.fixture
def idle_seconds() -> int:
    """The session idle time-out; long unless a test is about it."""
    return 600


@pytest.fixture
def web_url(services, settings, ledger, idle_seconds) -> Iterator[str]:  # noqa: F811
    app = create_app(services)
    install(app, services, WebConfig(b"test-session-secret", idle_seconds))
    projection = build_projection(settings, ledger)
    runner = ProjectionRunner(projection, idle_wait_s=0.05)
    runner_thread = runner.start_thread()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
    runner.stop()
    runner_thread.join(timeout=10)
    projection.engine.dispose()


@pytest.fixture
def in_suspense(ledger):
    """A cheque of £80.00 whose reference fails every fund's rule: it waits in suspense."""
    outcome = ledger.record_payment(
        RecordPayment(channel="cheque", amount_pence=8000, reference=SUSPENSE_REFERENCE),
        CommandContext("officer:officer"),
    )
    return outcome.payment_id


@pytest.fixture
def allocated(ledger):
    """A card payment of £250.00 allocated at once to Council Tax."""
    outcome = ledger.record_payment(
        RecordPayment(
            channel="govuk_pay", amount_pence=25000, reference=CT_REFERENCE, external_id="pay_web1"
        ),
        CommandContext("integration:integration"),
    )
    return outcome.payment_id


@pytest.fixture
def late_linked(ledger) -> str:
    """A statement whose line 1 (£7.00 from ALLPAY LTD) was recorded as its own receipt,
    then linked to the Allpay file that came after it: its batch id."""
    ctx = CommandContext("officer:importer")
    statement = camt(entry("7.00", ref="B1", text="ALLPAY LTD"))
    batch_id = import_file(ledger, statement, ctx, file_name="stmt.xml").batch_id
    allpay = allpay_file(allpay_line(CT_REF, "3.00"), allpay_line(CT_REF, "4.00"))
    import_file(ledger, allpay, ctx, file_name="be.txt")
    (link,) = link_counted_twice(ledger, ctx)
    assert link.line == 1
    return str(batch_id)


@pytest.fixture
def two_candidates(ledger) -> tuple[str, list[str]]:
    """A statement whose line 1 (£7.00 from ALLPAY LTD) may pay in either of two Allpay
    files of that total: its batch id, and the files' batch ids."""
    ctx = CommandContext("officer:importer")
    files = [
        str(import_file(ledger, allpay_file(*lines), ctx, file_name=name).batch_id)
        for name, lines in (
            ("be1.txt", (allpay_line(CT_REF, "3.00"), allpay_line(CT_REF, "4.00"))),
            ("be2.txt", (allpay_line(CT_REF, "2.00"), allpay_line(CT_REF, "5.00"))),
        )
    ]
    statement = camt(entry("7.00", ref="B1", text="ALLPAY LTD"))
    return str(import_file(ledger, statement, ctx, file_name="stmt.xml").batch_id), files


@pytest.fixture(scope="module")
def chromium():
    """A headless chromium driven by Playwright; skipped (failed under CI) when missing.

    Module-scoped: Playwright's sync API keeps an event loop running in this thread while it
    is open, and later tests in the same process need asyncio.run()."""
    problem = None
    if shutil.which(CHROMIUM) is None:
        problem = f"{CHROMIUM} is missing"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        problem = "playwright is not installed"
    if problem:
        if IN_CI:
            pytest.fail(f"{problem}; CI requires the browser tests: {HOW_TO_ENABLE_BROWSER}")
        pytest.skip(f"{problem}: {HOW_TO_ENABLE_BROWSER}")
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def browser_page(chromium):
    context = chromium.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


def token(who: str) -> str:
    return TOKENS[who] if who in TOKENS else LIMITED_TOKENS[who][1]
