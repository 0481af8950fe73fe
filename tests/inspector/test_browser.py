"""The inspector in real headless Chromium, as a person uses it (SQLite server only: the
endpoints behind it are covered on both stores by ``test_api.py``)."""

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.conftest import RunningServer
from tests.inspector.conftest import shot
from tests.inspector.helpers import finished_function_run, png, stored_failed_run, streaming_run
from tests.support.runs import ServerSpec, own_servers
from tests.support.scripted_upstream import ScriptedUpstream
from tests.support.validating_client import client as validating_client

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture says what is missing (skip, or fail in CI)
    expect = None

# The other tests share the session's SQLite server.
SQLITE = pytest.mark.parametrize("server", ["sqlite"], indirect=True)
# "+0 s → +1 s", "+0.5 s → +2 s": a place on the run's time axis, start and end.
SPAN = re.compile(r"\+\d+(\.\d)? s → \+\d+(\.\d)? s")


def sign_in(page: Any, server: RunningServer, key: str, path: str = "/inspector/") -> None:
    page.goto(f"{server.process.url}{path}")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


@SQLITE
def test_sign_in_and_read_a_finished_function_run(
    page: Any,
    server: RunningServer,
    client: openai.OpenAI,
    api_key: str,
    upstream: ScriptedUpstream,
) -> None:
    done = finished_function_run(client, upstream, metadata={"customer": "acme"})
    page.goto(f"{server.process.url}/inspector/runs/{done.run_id}")
    page.get_by_label("API key").fill("sk-not-a-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("That key was not accepted.")

    page.get_by_label("API key").fill(api_key)
    page.keyboard.press("Enter")

    expect(page.get_by_role("heading", level=1)).to_contain_text(done.run_id)
    for landmark in ("banner", "main"):
        expect(page.get_by_role(landmark)).to_have_count(1)
    expect(page.get_by_role("navigation", name="Breadcrumb")).to_be_visible()
    # The key lives in this tab's session only.
    assert page.evaluate("Object.keys(sessionStorage)") == ["runstep.inspector.key"]
    assert page.evaluate("localStorage.length") == 0 and page.context.cookies() == []

    facts = page.locator(".facts")
    expect(facts).to_contain_text("completed")
    expect(facts).to_contain_text(re.compile(r"Tokens\s*\d+ \(100 prompt \+ \d+ completion\)"))
    rows = page.locator(".timeline .row")
    expect(rows).to_have_count(3)
    expect(rows.nth(0)).to_contain_text("Run")
    expect(rows.nth(0)).to_contain_text("waited for tool outputs")
    expect(rows.nth(1)).to_contain_text("1. get_weather")
    expect(rows.nth(2)).to_contain_text("2. message")
    for n in range(3):
        expect(rows.nth(n).locator(".times")).to_contain_text(SPAN)
    for n in (1, 2):
        expect(rows.nth(n).locator(".tokens")).to_contain_text(re.compile(r"^\d+ tokens$"))
        expect(rows.nth(n).locator(".fill.status-completed")).to_be_visible()

    steps = page.locator(".steps > li")
    expect(steps).to_have_count(2)
    expect(steps.nth(0)).to_contain_text(re.compile(r"took (<1|\d+) s · tokens \d+ \(40 prompt"))
    expect(steps.nth(1)).to_contain_text("Message creation")
    # Tool calls expand from the keyboard.
    summary = page.get_by_text("function get_weather")
    summary.focus()
    page.keyboard.press("Enter")
    call = page.locator("details.call[open]")
    expect(call.get_by_label("Arguments of get_weather")).to_contain_text('"city": "Paris"')
    expect(call.get_by_label("Output of get_weather")).to_have_text("22C and sunny")
    expect(call).to_contain_text(done.call_id)

    conversation = page.locator(".messages")
    expect(conversation.locator(".role-user")).to_contain_text("Weather in Paris?")
    expect(conversation.locator(".role-assistant.own")).to_contain_text("Sunny in Paris.")
    shot(page, "finished_run")

    # Up to the thread, its runs, and the searchable list of threads.
    page.get_by_role("navigation", name="Breadcrumb").get_by_role(
        "link", name=done.thread_id
    ).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(done.thread_id)
    run_row = page.locator("tbody tr", has_text=done.run_id)
    expect(run_row).to_contain_text("completed")
    expect(run_row.locator("td.num").first).to_have_text(re.compile(r"^(<1|\d+) s$"))
    page.get_by_role("link", name="Threads").first.click()
    page.get_by_label("Search threads").fill("customer=acme")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("tbody tr")).to_have_count(1)
    expect(page.locator("tbody tr")).to_contain_text(done.thread_id)
    page.get_by_label("Search threads").fill("no-such-thing")
    page.get_by_label("Search threads").press("Enter")
    expect(page.get_by_text("No thread matches.")).to_be_visible()
    page.go_back()
    expect(page.locator("tbody tr")).to_contain_text(done.thread_id)


@pytest.fixture
def one_at_a_time(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    upstream: ScriptedUpstream,
) -> Iterator[RunningServer]:
    """A server whose worker executes one run at a time, so a second run waits queued."""
    spec = ServerSpec("sqlite", env={"RUNSTEP_WORKER_CONCURRENCY": "1"})
    with own_servers({"one-at-a-time": spec}, request, tmp_path_factory, upstream) as servers:
        yield servers["one-at-a-time"]


def test_a_streaming_run_updates_live(
    page: Any, one_at_a_time: RunningServer, upstream: ScriptedUpstream
) -> None:
    # The run watched waits behind another, so the page sees it start, and times it from
    # its events as they arrive.
    key = one_at_a_time.new_key()
    with validating_client(one_at_a_time.base_url, key) as client:
        streaming_run(client, upstream, chunks=6, delay=0.2)
        run_id, _, text = streaming_run(client, upstream, chunks=25, delay=0.1)
        sign_in(page, one_at_a_time, key, f"/inspector/runs/{run_id}")
        page.evaluate("window.stillTheSamePage = true")
        status = page.locator(".facts .badge").first
        expect(status).to_have_text("queued")
        expect(page.locator(".live")).to_be_visible()

        answer = page.locator(".messages .role-assistant .text")
        expect(answer).to_contain_text("word2")
        expect(status).to_have_text("in progress")
        seen = [answer.inner_text()]
        shot(page, "streaming_run_midway")
        deadline = time.monotonic() + 10
        while "word24" not in seen[-1] and time.monotonic() < deadline:
            page.wait_for_timeout(150)
            seen.append(answer.inner_text())
        # The text grew in several steps while the run was in progress, without a reload.
        growth = [len(t) for t in seen]
        assert len(set(growth)) >= 3 and growth == sorted(growth), growth
        expect(status).to_have_text("completed")
        expect(answer).to_have_text(text.strip())
        expect(page.locator(".live")).to_be_hidden()
        assert page.evaluate("window.stillTheSamePage") is True
        expect(page.locator("#announce")).to_have_text("Run completed")
        # Watched from its start: timed to the millisecond by the browser.
        expect(page.locator("#timeline-heading + div")).to_contain_text(
            "Measured as events arrived"
        )
        rows = page.locator(".timeline .row")
        expect(rows).to_have_count(2)
        expect(rows.nth(1).locator(".fill.status-completed")).to_be_visible()
        expect(rows.nth(1).locator(".length")).to_have_text(re.compile(r"^\d+\.\d\d s$"))
        expect(page.locator(".facts")).to_contain_text(re.compile(r"Duration\s*\d+\.\d\d s"))
        expect(page.locator(".steps > li")).to_contain_text("completed")


@SQLITE
def test_another_keys_runs_are_not_visible(
    page: Any, server: RunningServer, client: openai.OpenAI, upstream: ScriptedUpstream
) -> None:
    theirs = finished_function_run(client, upstream)
    sign_in(page, server, server.new_key())

    expect(page.get_by_text("No threads yet.")).to_be_visible()
    page.get_by_label("Search threads").fill(theirs.thread_id)
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_text("No thread matches.")).to_be_visible()
    for path, what in (("runs", theirs.run_id), ("threads", theirs.thread_id)):
        page.goto(f"{server.process.url}/inspector/{path}/{what}")
        expect(page.get_by_role("alert")).to_contain_text("Not found.")
        expect(page.get_by_text(what)).to_have_count(0)
    page.get_by_role("link", name="Assistants").click()
    expect(page.get_by_text("No assistants yet.")).to_be_visible()

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0


@SQLITE
def test_run_page_shows_search_results_code_errors_citations_and_images(
    page: Any, server: RunningServer, client: openai.OpenAI, api_key: str
) -> None:
    stored = stored_failed_run(server, client, api_key)
    sign_in(page, server, api_key, f"/inspector/runs/{stored.run_id}")

    alert = page.locator(".alert[role=alert]")
    expect(alert).to_contain_text("Run failed: server_error.")
    expect(alert).to_contain_text("The model server went away.")
    expect(page.locator(".timeline .fill.status-failed")).to_have_count(2)  # the run, a step

    search = page.locator("summary", has_text="file_search")
    expect(search).to_contain_text("refund")
    expect(search).to_contain_text("2 results")
    search.click()
    results = page.locator(".results > li")
    expect(results).to_have_count(2)
    expect(results.nth(0)).to_contain_text("handbook.txt")
    expect(results.nth(0)).to_contain_text("score 0.873")
    results.nth(0).get_by_text("Passage").click()
    expect(results.nth(0).locator(".passage")).to_have_text("Refunds take 14 days.")

    page.locator("summary", has_text="code_interpreter").click()
    expect(page.get_by_label("Code")).to_contain_text("print(sum(range(10)))")
    expect(page.get_by_label("Logs")).to_have_text("45")

    answer = page.locator(".messages .role-assistant")
    expect(answer.locator("mark.cite").nth(0)).to_contain_text("【0:0†handbook.txt】")
    expect(answer.locator(".citations")).to_contain_text("Cites handbook.txt")
    expect(answer.locator("mark.cite").nth(1)).to_contain_text("sandbox:/mnt/data/chart.png")
    with page.expect_download() as saving:
        answer.get_by_role("button", name="Download chart.png").click()
    saved = saving.value
    assert saved.suggested_filename == "chart.png"
    assert Path(saved.path()).read_bytes() == png()
    images = page.locator("img.image")
    expect(images).to_have_count(2)  # the code output and the message's image_file
    for n in range(2):
        expect(images.nth(n)).to_have_attribute("src", re.compile("^blob:"))
        loaded = "img => img.complete && img.naturalWidth === 48"
        page.wait_for_function(loaded, arg=images.nth(n).element_handle())
    expect(answer.locator("figcaption")).to_contain_text("chart.png")
