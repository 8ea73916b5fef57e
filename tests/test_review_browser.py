"""The review app as an editor uses it: headless Chromium (Debian's chromium + chromium-driver, driven by
Selenium, no browser download) signs in, reviews five articles with the keyboard (one corrected), undoes
one and opens the stats page; screenshots go to the test's temporary folder."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from review_server import ReviewServer
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait
from sqlalchemy import update

from tagger.review.importer import import_files
from tagger.review.schema import items
from tagger.review.store import Store

HOSTILE = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2">'


def _browser_paths() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver") or ("/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None)
    if not chromium or not driver:
        pytest.fail("chromium and chromedriver are needed: apt-get install -y chromium chromium-driver "
                    "(.ci/run installs them)", pytrace=False)
    return chromium, driver


@pytest.fixture
def browser(tmp_path: Path):
    chromium, driver = _browser_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,1000",
                "--lang=ar", f"--user-data-dir={tmp_path / 'chrome-profile'}"):
        options.add_argument(arg)
    d = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    d.set_page_load_timeout(60)
    yield d
    d.quit()


@pytest.fixture
def review_db(tmp_path: Path, loaded, shared_dir: Path) -> tuple[str, str]:
    day = tmp_path / "day.jsonl"
    with open(shared_dir / "gold/dev.jsonl", encoding="utf-8") as f, open(day, "w", encoding="utf-8") as g:
        for k, line in zip(range(12), f):
            row = json.loads(line)
            row.pop("topics")
            row["tags"] = ["سياسة", "عاجل"]
            if k == 0:
                row["title"] = HOSTILE + " " + row["title"]
                hostile_id = row["id"]
            g.write(json.dumps(row, ensure_ascii=False) + "\n")
    db = str(tmp_path / "review.db")
    with Store(db, topics=loaded.model.topics) as store:
        assert import_files(store, loaded, [str(day)]).added == 12
        store.add_user("amal", "editor", "a-long-password")
        with store.engine.begin() as conn:  # a UI test: a fixed order, the hostile article first
            conn.execute(update(items).values(random_slice=False))
            conn.execute(update(items).where(items.c.doc_id == hostile_id).values(priority=-100.0))
    return db, hostile_id


def _article_id(browser) -> str | None:
    """The shown article's id; None while the page is reloading."""
    try:
        return browser.find_element(By.ID, "article").get_attribute("data-id")
    except (NoSuchElementException, StaleElementReferenceException):
        return None


def _press(browser, key: str) -> None:
    """A key press once the page's keyboard handler is installed (a key before that would be lost)."""
    WebDriverWait(browser, 20).until(
        lambda b: b.execute_script("return document.body && document.body.dataset.keys === 'ready'"))
    browser.find_element(By.TAG_NAME, "body").send_keys(key)


def _next_article(browser, old_id: str) -> None:
    WebDriverWait(browser, 20).until(lambda b: _article_id(b) not in (None, old_id) or b.find_elements(By.ID, "empty"))


def test_editor_reviews_with_the_keyboard(browser, review_db, loaded, tmp_path: Path) -> None:
    db, hostile_id = review_db
    server = ReviewServer(db)
    try:
        browser.get(server.url + "/")
        assert browser.current_url.endswith("/login")
        browser.find_element(By.ID, "name").send_keys("amal")
        browser.find_element(By.ID, "password").send_keys("a-long-password" + Keys.ENTER)
        WebDriverWait(browser, 20).until(ec.presence_of_element_located((By.ID, "article")))

        # Right to left, the hostile title shown as text and never run, evidence marked on article words.
        assert browser.find_element(By.TAG_NAME, "html").get_attribute("dir") == "rtl"
        article = browser.find_element(By.ID, "article")
        assert article.value_of_css_property("direction") == "rtl"
        assert _article_id(browser) == hostile_id
        assert browser.execute_script("return window.pwned === undefined")
        assert "<script>window.pwned=1</script>" in browser.find_element(By.ID, "title").text
        assert not browser.find_elements(By.CSS_SELECTOR, "#article script, #article img")
        marks = browser.find_elements(By.CSS_SELECTOR, "#article mark.ev")
        assert marks, "no evidence highlighted"
        text = browser.find_element(By.ID, "body").text + browser.find_element(By.ID, "title").text
        assert all(m.text and m.text in text for m in marks)
        assert "عاجل" in browser.find_element(By.ID, "dropped").text
        browser.save_screenshot(str(tmp_path / "review-page.png"))

        reviewed: list[str] = []
        corrected = None
        for k in range(5):
            doc_id = _article_id(browser)
            reviewed.append(doc_id)
            if k == 2:  # a correction: toggle the first topic (key 1), then confirm
                box = browser.find_element(By.CSS_SELECTOR, 'input.topic[data-key="1"]')
                before = box.is_selected()
                _press(browser, "1")
                assert box.is_selected() != before
                corrected = (doc_id, box.get_attribute("value"), not before)
            _press(browser, Keys.ENTER)
            _next_article(browser, doc_id)
        assert len(set(reviewed)) == 5

        last = reviewed[-1]
        shown = _article_id(browser)
        _press(browser, "u")  # undo the last decision: its article comes back
        WebDriverWait(browser, 20).until(lambda b: _article_id(b) not in (None, shown))
        assert _article_id(browser) == last

        browser.get(server.url + "/stats")
        WebDriverWait(browser, 20).until(ec.presence_of_element_located((By.ID, "stats")))
        assert len(browser.find_elements(By.CSS_SELECTOR, "#stats svg")) >= 5
        assert loaded.version in browser.find_element(By.ID, "versions").text
        summary = browser.find_element(By.ID, "summary").text
        assert "4 قرارًا" in summary and "من 12" in summary  # four standing decisions, twelve articles
        browser.save_screenshot(str(tmp_path / "stats-page.png"))
    finally:
        server.stop()

    assert (tmp_path / "review-page.png").stat().st_size > 10_000
    assert (tmp_path / "stats-page.png").stat().st_size > 10_000
    with Store(db) as store:
        standing = {d["doc_id"]: d for d in store.standing_decisions()}
        assert set(standing) == set(reviewed[:4])  # the fifth was undone
        undone = store.history(store.item_id(last))
        assert [h["undone"] for h in undone] == [True]
        doc_id, topic, now_on = corrected
        d = standing[doc_id]
        assert d["action"] == "correct" and (topic in d["topics"]) == now_on
        assert all(standing[i]["action"] == "accept" for i in reviewed[:4] if i != doc_id)
        assert all(standing[i]["model_version"] == loaded.version for i in reviewed[:4])
