"""The HTML leaderboard in a real browser: headless Chromium (Debian's ``chromium`` and ``chromium-driver``,
installed by ``make test``; nothing downloads a browser build) opens ``index.html`` from a quick run and
checks that the tables render, that clicking a column header sorts it, that a filter hides rows, that a
number opens its provenance, and that the console shows no error.

``BDBENCH_SCREENSHOT=path.png`` also saves a screenshot of the page (how ``docs/leaderboard_html.png`` is made).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from bench_core.leaderboard import write_leaderboard
from bench_core.runner import Runner
from bench_core.suite import load_suite

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BDBENCH_HOME", str(tmp_path_factory.mktemp("home")))
        suite = load_suite("quick")
        runner = Runner(suite, log=lambda msg: None)
        runner.run()
        out = tmp_path_factory.mktemp("board")
        write_leaderboard(suite, out, store=runner.store, plan=runner.plan, formats=["html"])
    return out / "index.html"


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("chromium / chromedriver not installed (make test installs Debian's chromium and chromium-driver)")
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never fetch a driver or a browser
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def test_page_is_self_contained(page):
    text = page.read_text()
    for remote in ("http://", "https://", "//cdn"):
        assert f'src="{remote}' not in text and f"href=\"{remote}" not in text and "@import" not in text


def test_tables_sort_filter_trace_and_the_console_is_clean(page, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.get(page.as_uri())
    tables = browser.find_elements(By.CSS_SELECTOR, "table.board")
    assert len(tables) >= 5, "tables did not render"
    browser.find_element(By.CSS_SELECTOR, '.tab[data-page="defenses"]').click()
    table = browser.find_element(By.ID, "table-all_metrics")
    assert table.is_displayed() and len(table.find_elements(By.CSS_SELECTOR, "tbody tr")) >= 4

    # sort by the RA column (numbers with data-value; '—' for the clean rows sorts last)
    header = [th for th in table.find_elements(By.CSS_SELECTOR, "th") if th.text.startswith("RA")][0]
    col = int(header.get_attribute("data-col"))

    def column_values():
        return [td.get_attribute("data-value") for td in
                table.find_elements(By.CSS_SELECTOR, f"tbody tr td:nth-child({col + 1})")]

    header.click()
    values = [float(v) for v in column_values() if v is not None]
    assert values == sorted(values) and len(values) >= 2
    header.click()
    values = [float(v) for v in column_values() if v is not None]
    assert values == sorted(values, reverse=True)

    # filter by attack: rows of other attacks hide
    rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
    Select(browser.find_element(By.CSS_SELECTOR, 'select[data-filter="attack"]')).select_by_value("badnet")
    shown = [r for r in rows if r.is_displayed()]
    assert 0 < len(shown) < len(rows)
    assert all(r.get_attribute("data-attack") == "badnet" for r in shown)
    Select(browser.find_element(By.CSS_SELECTOR, 'select[data-filter="attack"]')).select_by_value("")
    assert all(r.is_displayed() for r in rows)

    # a number's provenance: its cell key, seed and full specs
    cell = table.find_element(By.CSS_SELECTOR, "td.traced")
    cell.click()
    panel = browser.find_element(By.ID, "provenance-panel")
    assert panel.is_displayed()
    key = cell.get_attribute("data-keys").split(",")[0]
    assert key in panel.text and "seed 0" in panel.text and '"spec"' in panel.text and '"env"' in panel.text

    shot = os.environ.get("BDBENCH_SCREENSHOT")
    if shot:
        browser.find_element(By.CSS_SELECTOR, "#provenance-panel button").click()
        browser.execute_script("window.scrollTo(0, 0)")
        browser.save_screenshot(shot)

    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert not errors, errors


def test_a_hostile_board_keeps_its_tabs_and_runs_no_script_of_its_data(tmp_path, browser, monkeypatch):
    """Labels that try to embed a file, add a script link and open a comment: the page still works."""
    import yaml

    monkeypatch.setenv("BDBENCH_HOME", str(tmp_path / "home"))
    raw = yaml.safe_load((Path(__file__).parent.parent / "bench_core" / "suites" / "quick.yaml").read_text())
    raw["attacks"] = [{"name": "badnet", "label": "![x](/etc/hostname) <!--<script>", "config": {"patch_size": 4}},
                      {"name": "blended", "label": "[c](javascript:window.pwned=1)"}]
    path = tmp_path / "hostile.yaml"
    path.write_text(yaml.safe_dump(raw))
    out = tmp_path / "board"
    write_leaderboard(load_suite(str(path)), out, formats=["html"])
    from selenium.webdriver.common.by import By

    browser.get((out / "index.html").as_uri())
    for name in ("defenses", "detectors", "runs"):
        browser.find_element(By.CSS_SELECTOR, f'.tab[data-page="{name}"]').click()
        assert browser.find_element(By.ID, f"page-{name}").is_displayed()
    assert "[c](javascript:window.pwned=1)" in browser.find_element(By.ID, "page-defenses").get_attribute("textContent")
    assert browser.execute_script("return window.pwned === undefined")
    assert not browser.find_elements(By.CSS_SELECTOR, 'a[href^="javascript"], img[src^="file"]')
    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert not errors, errors
