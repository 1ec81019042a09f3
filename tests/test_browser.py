"""The app as a person uses it: headless Chromium types a query, presses Search and sees the songs.

Uses Debian's /usr/bin/chromium through Playwright (browser downloads fail here); skipped only when it is absent.
A screenshot of the results is saved to test-artifacts/app-results.png (gitignored).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOT = REPO_ROOT / "test-artifacts" / "app-results.png"
QUERY = "driving alone at night after a breakup"
KNOWN_TITLE = "Headlights on Route 9"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed")]


@pytest.fixture(scope="module")
def app_url(default_recommender):
    """The real app (default registry) on a free local port, with the baseline already loaded once."""
    import app
    from tests.test_app import launched

    with launched(app.REGISTRY) as url:
        yield url


@pytest.fixture(scope="module")
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 1000})
            yield context.new_page()
        finally:
            browser.close()


def test_search_shows_songs_and_matched_lines(app_url, page):
    from playwright.sync_api import expect

    import app

    page.goto(app_url, wait_until="domcontentloaded")
    status = page.locator("#status-line")
    expect(status).to_contain_text("Loaded:", timeout=60_000)  # the loading progress ends in the status line
    ranking = page.locator("#ranking-box")  # shared by the Text, Image and Compare tabs
    expect(ranking).to_contain_text("Ranking")
    default_label = dict((name, label) for label, name in app.RANKING_CHOICES)[app.SETTINGS.default_ranking]
    expect(ranking.locator("input")).to_have_value(default_label)
    page.locator("#query-box textarea").fill(QUERY)
    page.locator("#search-button").click()
    table = page.locator("#results-table")
    expect(table).to_contain_text(KNOWN_TITLE, timeout=30_000)
    rows = table.locator("[role=row]:has([role=gridcell])")  # gradio 6's virtual table: ARIA rows, not <tr>s
    assert rows.count() == 10  # the default top N
    assert rows.first.locator("[role=gridcell]").first.inner_text().strip() == "1"
    lines = page.locator("#matched-lines")
    expect(lines.locator("li.best").first).to_be_visible()
    assert KNOWN_TITLE in lines.inner_text()
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert SCREENSHOT.stat().st_size > 10_000

    # The catalog map shows the songs and the query (a matplotlib picture).
    page.get_by_role("tab", name="Catalog map").click()
    expect(page.locator("#catalog-map img")).to_be_visible(timeout=10_000)

    # Enter submits too; the table follows the new query.
    page.get_by_role("tab", name="Results").click()
    page.locator("#query-box textarea").fill("dancing in the summer rain")
    page.locator("#query-box textarea").press("Enter")
    expect(table).to_contain_text("Summer Rain Waltz", timeout=30_000)
