"""The web console in a real headless Chromium against a real `ftagent api` process running a tiny job:
sign in (typed token, then the /#token= fragment), ask for a model in the chat (a question back first),
watch the job's phase change and the loss curve grow, read the evaluation and the rounds, promote the
version and ask it next to its base. Screenshots of the job and models pages go to the test's tmp folder."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from browser import BrowserUnavailable, full_page_screenshot, start_chromium
from tiny_job import small_corpus, tiny_job_options

REPO = Path(__file__).resolve().parents[2]
TOKEN = "browser-token-42"  # the server's own (admin) token; the people below sign in with their own


def _four_documents(target: Path) -> Path:
    """Four on-topic documents (train, val and test each get one or more): curation takes seconds."""
    small_corpus(target)
    (target / "stabilizer-formalism.html").unlink()
    return target


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture()
def api_server(home, tmp_path):
    """`ftagent api` (with its queue worker) on a free loopback port; yields its base URL."""
    port, log = _free_port(), tmp_path / "server.log"
    env = {**os.environ, "FTAGENT_HOME": str(home), "FTAGENT_API_TOKEN": TOKEN, "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "FTAGENT_DOCUMENT_ROOTS": str(tmp_path)}  # the docs box's folder
    process = subprocess.Popen([sys.executable, "-m", "agent.cli", "api", "--port", str(port)], cwd=REPO,
                               env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise AssertionError(f"the API did not start: {log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield base
    finally:
        process.kill()
        process.wait(10)


@pytest.fixture()
def chromium(tmp_path):
    try:
        driver = start_chromium(tmp_path / "chromium-profile")
    except BrowserUnavailable as error:
        pytest.fail(f"the browser test cannot run: {error}")
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


def _wait(driver, condition, timeout: float, what: str):
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1,
                             ignored_exceptions=(WebDriverException,)).until(lambda d: condition(d))
    except WebDriverException as error:
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; page says: "
                             f"{driver.find_element('tag name', 'main').text[:1500]}") from error


def _text(driver, selector: str) -> str:
    """The first match's text; the console re-renders its lists while it polls, so a match that went stale
    between finding and reading is looked up again."""
    from selenium.common.exceptions import StaleElementReferenceException

    for _ in range(20):
        found = driver.find_elements("css selector", selector)
        try:
            return found[0].text if found else ""
        except StaleElementReferenceException:
            time.sleep(0.05)
    raise AssertionError(f"{selector} kept being replaced while it was read")


def _open_first(driver, selector: str):
    """Clicks the first match and returns its text, or None while there is none (inside `_wait`, a match the
    polling re-render replaced is simply looked up again)."""
    found = driver.find_elements("css selector", selector)
    if not found:
        return None
    text = found[0].text
    found[0].click()
    return text


def _send(driver, field: str, text: str) -> None:
    from selenium.webdriver.common.keys import Keys

    box = driver.find_element("id", field)
    box.clear()
    box.send_keys(text)
    if field == "chat-input":
        box.send_keys(Keys.ENTER)  # Enter sends the chat message


def _user_tokens(home: Path) -> dict[str, str]:
    """alice is an admin (her job names a model folder and looser gates, and she promotes); bob is not."""
    from agent.settings import resolve_settings
    from tools.stores.api_tokens import TokenStore

    tokens = TokenStore(resolve_settings({"home": str(home)}).database)
    return {"alice": tokens.add("alice", admin=True), "bob": tokens.add("bob")}


def test_console_in_chromium_runs_a_job_from_a_sentence_and_promotes_it(api_server, chromium, tmp_path,
                                                                        tiny_model_dir, home):
    driver, shots, tokens = chromium, {}, _user_tokens(home)
    started = time.monotonic()
    # --- sign in: a wrong token is refused with the server's reason, the right one lets us in
    driver.get(api_server + "/")
    _wait(driver, lambda d: d.find_elements("id", "token"), 10, "the sign-in box")
    _send(driver, "token", "not-the-token")
    driver.find_element("css selector", "#signin button[type=submit]").click()
    _wait(driver, lambda d: "refused" in _text(d, "#signin-error"), 10, "the refusal")
    _send(driver, "token", tokens["alice"])
    driver.find_element("css selector", "#signin button[type=submit]").click()
    _wait(driver, lambda d: "alice" in _text(d, "#who"), 10, "the signed-in user")
    # the fragment: after signing out, /#token=… signs in and leaves the address bar at once
    driver.find_element("id", "signout").click()
    driver.get(f"{api_server}/#token={tokens['alice']}")
    _wait(driver, lambda d: d.find_elements("id", "chat-input"), 10, "the chat after a /#token= link")
    assert tokens["alice"] not in driver.current_url and driver.execute_script("return location.hash") == "#/"
    assert str(tmp_path) in _text(driver, "#docs-hint")  # the server's document roots

    # --- the chat: a request without a subject gets a question back; the answer starts the job
    options = tiny_job_options(tiny_model_dir, max_rounds=0, gates={
        "min_nll_improvement": 0.0, "max_general_ppl_increase": 1.0, "min_train_examples": 4})
    options["evaluation"].update(general_qa=2, general_texts=2)
    options.pop("docs_path")  # the folder box gives it
    options.pop("base_model")  # the sentence names it: the tiny model's folder in place of SmolLM2
    _send(driver, "docs-folder", str(_four_documents(tmp_path / "docs")))
    driver.find_element("css selector", "#chat-form details summary").click()
    driver.execute_script("document.getElementById('chat-options').value = arguments[0]", json.dumps(options))
    _send(driver, "chat-input", f"fine-tune {tiny_model_dir} on it")
    _wait(driver, lambda d: "learn about?" in _text(d, "#chat-log li.agent.question"), 30, "the question back")
    _send(driver, "chat-input", "quantum error correction")
    _wait(driver, lambda d: "Started job" in _text(d, "#chat-log"), 30, "the job to start")
    job_id = _wait(driver, lambda d: _open_first(d, "#jobs-body tr[data-job] a"), 10, "the job row")

    # --- the job page: the phase changes and the loss curve grows while it runs, then the results
    _wait(driver, lambda d: _text(d, "#job-phase"), 10, "the phase")
    phases = {_text(driver, "#job-phase")}
    def finished(d):
        phases.add(_text(d, "#job-phase"))
        return d.find_element("id", "job-summary").get_attribute("data-status") in ("succeeded", "failed")
    curve = []  # (points on the loss curve, job status) at each look
    def curve_grows(d):
        done = finished(d)
        curve.append((int(d.find_element("id", "loss-svg").get_attribute("data-points")),
                      d.find_element("id", "job-summary").get_attribute("data-status")))
        return done
    _wait(driver, curve_grows, 420, "the job to finish")  # ~30 s on an idle machine
    assert _text(driver, "#job-summary").startswith("succeeded"), _text(driver, "#job-summary")
    assert len(phases - {""}) >= 3, phases  # e.g. waiting → curator → trainer → deployer
    assert curve[-1][0] == 6, curve  # every training step is on the curve
    assert any(points > 0 and status == "running" for points, status in curve), curve  # drawn live
    _wait(driver, lambda d: d.find_elements("css selector", "#eval-table tbody tr"), 30, "the evaluation table")
    table = _text(driver, "#eval-table")
    assert "answer NLL" in table and "base" in table and "tuned" in table
    assert driver.find_elements("css selector", "#per-example .base-answer")
    assert driver.find_elements("css selector", "#per-example .tuned-answer")
    _wait(driver, lambda d: d.find_elements("css selector", "#rounds [data-round='1']"), 30, "round 1")
    _wait(driver, lambda d: d.find_elements("css selector", "#dataset table.dataset-examples tbody tr"), 10,
          "the dataset examples")
    assert "gate" in _text(driver, "#events") and "training backend" in _text(driver, "#events")
    shots["job"] = full_page_screenshot(driver, tmp_path / "console-job.png")

    # --- the models page: the version, its gates and card; promote it; ask it next to its base
    driver.find_element("css selector", "#nav a[data-page=models]").click()
    _wait(driver, lambda d: d.find_elements("id", "model-name"), 30, "the model detail")
    name = _text(driver, "#model-name")
    assert _text(driver, f"#models-body tr[data-model='{name}']")
    assert "Evaluation" in _text(driver, "#model-detail")  # the model card
    if driver.find_elements("id", "force-promote"):  # the tiny model's gates failed: promote it anyway
        driver.find_element("id", "force-promote").click()
    driver.find_element("id", "promote").click()
    _wait(driver, lambda d: "production" in _text(d, f"#models-body tr[data-model='{name}']"), 60, "production")
    _send(driver, "ask-question", "What is a logical qubit?")
    driver.find_element("id", "ask-send").click()
    _wait(driver, lambda d: d.find_elements("css selector", "#ask-answers .base-answer"), 120, "both answers")
    assert name in _text(driver, "#ask-answers .tuned-answer")
    shots["models"] = full_page_screenshot(driver, tmp_path / "console-models.png")

    errors = [entry for entry in driver.get_log("browser")  # the wrong token's 401 is expected
              if entry["level"] == "SEVERE" and "status of 401" not in entry["message"]]
    assert not errors, errors

    # --- bob, who is not an admin, sees none of alice's jobs and cannot change the registry
    driver.find_element("id", "signout").click()
    driver.get(f"{api_server}/#token={tokens['bob']}")
    _wait(driver, lambda d: "bob" in _text(d, "#who"), 10, "bob signed in")
    _wait(driver, lambda d: "No jobs yet" in _text(d, "#jobs-body"), 10, "bob's empty job list")
    driver.get(f"{api_server}/#/jobs/{job_id}")
    _wait(driver, lambda d: f"no job with id '{job_id}'" in _text(d, "#job-summary"), 10, "alice's job hidden")
    driver.get(f"{api_server}/#/models/{name}")
    _wait(driver, lambda d: "admin" in _text(d, "#model-actions"), 30, "no model actions for bob")
    assert not driver.find_elements("id", "promote")
    for page, path in shots.items():
        print(f"screenshot of the {page} page: {path}")
    print(f"browser flow took {time.monotonic() - started:.1f}s for job {job_id}")
