"""The chat page in a real headless Chromium against a real `memory-agent serve` process.

The browser is the system's Chromium (`make browser` installs Debian's package); a missing
browser fails these tests. Set `MEMORY_AGENT_TEST_SCREENSHOTS=<folder>` to save pictures of the page.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser import chat_server, chromium

pytestmark = pytest.mark.slow

_KEY = "key-sam-chat-page"
_TIMEOUT_MS = 20_000
# Each model call's reply is spread over this long, so tokens arrive one by one.
_MODEL = "offline:slow-0.6"

expect.set_options(timeout=_TIMEOUT_MS)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Chromium, from the system (never a browser a test tool downloads)."""
    with chromium() as launched:
        yield launched


def _server(tmp_path: Path, api_keys: str) -> Iterator[str]:
    with chat_server(tmp_path, api_keys, _MODEL) as base:
        yield base


@pytest.fixture
def keyed_server(tmp_path: Path) -> Iterator[str]:
    """`memory-agent serve` with one API key, for user acme/sam."""
    yield from _server(tmp_path, f"{_KEY}=acme/sam")


@pytest.fixture
def dev_server(tmp_path: Path) -> Iterator[str]:
    """`memory-agent serve` in development mode (no keys)."""
    yield from _server(tmp_path, "")


@dataclass
class Watched:
    """A page, with every request it made and every error it reported."""

    page: Page
    base: str
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def assert_clean(self) -> None:
        """Nothing left the server's origin, and the page reported no error."""
        assert self.requests, "the page made no request"
        elsewhere = [u for u in self.requests if not u.startswith((self.base + "/", "data:"))]
        assert elsewhere == []
        assert self.errors == []


@pytest.fixture
def open_page(browser: Browser) -> Iterator[object]:
    """Open the chat page of a server in a fresh browser context."""
    contexts = []

    def open_(base: str) -> Watched:
        context = browser.new_context(viewport={"width": 1200, "height": 760})
        context.set_default_timeout(_TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        watched = Watched(page, base)
        page.on("request", lambda r: watched.requests.append(r.url))
        page.on("pageerror", lambda e: watched.errors.append(str(e)))
        page.on(
            "console",
            lambda m: watched.errors.append(m.text) if m.type == "error" else None,
        )
        page.goto(base + "/")
        return watched

    yield open_
    for context in contexts:
        context.close()


def _record_stream(page: Page) -> None:
    """Keep every text the streaming reply shows, in `window.streamed`."""
    page.evaluate(
        """() => {
          window.streamed = [];
          new MutationObserver(() => {
            const node = document.querySelector('.message.streaming .text');
            if (node && node.textContent) window.streamed.push(node.textContent);
          }).observe(document.getElementById('transcript'),
                     {childList: true, subtree: true, characterData: true});
        }"""
    )


def _submit(page: Page, text: str) -> None:
    """Send `text` from the composer and wait until the page has shown the outcome."""
    sent = int(page.locator("body").get_attribute("data-sent") or 0)
    _record_stream(page)
    page.fill("#message", text)
    page.press("#message", "Enter")
    expect(page.locator("body")).to_have_attribute("data-sent", str(sent + 1))
    expect(page.locator("#notice")).to_be_hidden()


def _send(page: Page, text: str) -> str:
    """Send `text` from the composer; the final reply, once the transcript is reloaded."""
    _submit(page, text)
    return page.locator(".message.assistant").last.locator(".text").inner_text()


def _assert_streamed(page: Page, reply: str) -> None:
    streamed: list[str] = page.evaluate("window.streamed")
    partial = [s for s in dict.fromkeys(streamed) if s != reply]
    assert len(partial) >= 2, f"expected the reply to grow token by token, saw {streamed}"
    assert all(reply.startswith(s) for s in partial), (streamed, reply)


def _screenshot(page: Page, name: str) -> None:
    folder = os.environ.get("MEMORY_AGENT_TEST_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / name))


def test_chat_page_with_an_api_key(keyed_server: str, open_page) -> None:
    watched: Watched = open_page(keyed_server)
    page = watched.page
    dialog = page.locator("#key-dialog")

    # No key yet: the page asks; a wrong one is refused and asked for again.
    expect(dialog).to_be_visible()
    page.fill("#key-input", "not-a-key")
    page.click("#key-save")
    expect(page.locator("#key-error")).to_contain_text("not accepted")
    page.fill("#key-input", _KEY)
    page.click("#key-save")
    expect(dialog).to_be_hidden()
    expect(page.locator("#mode-label")).to_have_text("signed in as sam")
    expect(page.locator("#model-label")).to_have_text("offline model")
    expect(page.locator("body")).to_have_attribute("data-ready", "true")

    # A message streams in token by token; the agent remembers what it was told.
    reply = _send(page, "Hi, my name is Sam and I prefer express shipping.")
    assert reply == "Noted: The user's name is Sam. Prefers express shipping."
    _assert_streamed(page, reply)
    expect(page.locator(".message.user .text")).to_have_text(re.compile("my name is Sam"))
    expect(page.locator(".message.tool").first).to_contain_text("save_memory")
    expect(page.locator("#memories")).to_contain_text("The user's name is Sam.")
    expect(page.locator("#sessions .session")).to_have_count(1)
    first = page.locator("#session-title").inner_text()
    assert page.url.endswith("#" + first)

    # Reloading keeps the key and shows the session's history.
    page.reload()
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    expect(dialog).to_be_hidden()
    expect(page.locator(".message.assistant .text")).to_have_text([reply])
    expect(page.locator(".message.user .text")).to_have_text(
        ["Hi, my name is Sam and I prefer express shipping."]
    )

    # A new session starts empty and still knows the user.
    page.click("#new-session")
    expect(page.locator("#sessions .session")).to_have_count(2)
    expect(page.locator("#transcript .message")).to_have_count(0)
    second = page.locator("#session-title").inner_text()
    assert second != first
    assert _send(page, "What is my name?") == "Your name is Sam."

    # Switching sessions shows each one's own transcript.
    page.locator(f'#sessions .session[data-thread-id="{first}"] button').click()
    expect(page.locator("#session-title")).to_have_text(first)
    expect(page.locator(".message.assistant .text")).to_have_text([reply])
    _screenshot(page, "chat-page.png")
    page.locator(f'#sessions .session[data-thread-id="{second}"] button').click()
    expect(page.locator(".message.assistant .text")).to_have_text(["Your name is Sam."])

    # Ending a session closes it to new messages.
    page.click("#end-session")
    expect(page.locator("#session-status")).to_have_text("ended")
    expect(page.locator("#send")).to_be_disabled()
    expect(page.locator("#notice")).to_contain_text("ended")
    expect(page.locator(f'#sessions .session[data-thread-id="{second}"]')).to_contain_text("ended")
    _screenshot(page, "chat-page-ended.png")

    # Deleting one removes it from the list and from the server.
    page.once("dialog", lambda d: d.accept())
    page.click("#delete-session")
    expect(page.locator("#sessions .session")).to_have_count(1)
    expect(page.locator("#session-title")).to_have_text("No session selected")
    expect(page.locator(f'#sessions .session[data-thread-id="{first}"]')).to_have_count(1)

    # A key the server no longer accepts makes the page ask again.
    page.evaluate("localStorage.setItem('memory-agent.api-key', 'revoked')")
    page.reload()
    expect(dialog).to_be_visible()
    expect(page.locator("#key-error")).to_contain_text("not accepted")
    page.fill("#key-input", _KEY)
    page.click("#key-save")
    expect(page.locator("#sessions .session")).to_have_count(1)

    # The only errors are the 401s the key prompts answered.
    watched.errors = [e for e in watched.errors if "401" not in e]
    watched.assert_clean()


def test_chat_page_in_development_mode(dev_server: str, open_page) -> None:
    watched: Watched = open_page(dev_server)
    page = watched.page
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    expect(page.locator("#key-dialog")).to_be_hidden()
    expect(page.locator("#mode-label")).to_contain_text("development mode")
    expect(page.locator("#change-key")).to_be_hidden()
    reply = _send(page, "I'm allergic to <b>penicillin</b> & nuts")
    _assert_streamed(page, reply)
    # Text from the user and the model is shown as text, never parsed as markup.
    expect(page.locator(".message.user .text")).to_have_text(
        ["I'm allergic to <b>penicillin</b> & nuts"]
    )
    assert page.locator("#transcript b").count() == 0
    expect(page.locator("#sessions .session")).to_have_count(1)

    # The API docs render from this server's own copy of Swagger UI.
    page.goto(dev_server + "/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("memory-agent")
    expect(
        page.locator(
            ".opblock-summary-path", has_text=re.compile(r"^/threads/\{thread_id\}/runs/stream$")
        )
    ).to_have_count(1)
    watched.assert_clean()


@pytest.fixture
def approval_server(tmp_path: Path) -> Iterator[str]:
    """Development mode, serving the order desk with `order_status` waiting for approval."""
    with chat_server(
        tmp_path,
        "",
        "offline",
        graph="tests.owngraph:make_order_desk",
        approve_tools="order_status",
    ) as base:
        yield base


def _answer(page: Page, click: str) -> None:
    """Click a card's button and wait until the page has shown the run it started."""
    sent = int(page.locator("body").get_attribute("data-sent") or 0)
    page.locator(".approval").get_by_role("button", name=click).click()
    expect(page.locator("body")).to_have_attribute("data-sent", str(sent + 1))
    expect(page.locator("#notice")).to_be_hidden()


def test_a_tool_call_waits_for_approval_on_the_page(approval_server: str, open_page) -> None:
    watched: Watched = open_page(approval_server)
    page = watched.page
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    _submit(page, "where is order A-1?")
    card = page.locator(".approval")
    expect(card).to_have_count(1)
    expect(card.locator(".approval-tool")).to_have_text("order_status")
    assert '"A-1"' in card.locator(".approval-args").input_value()
    expect(page.locator("#message")).to_be_disabled()
    _screenshot(page, "approval.png")
    # Nothing ran yet, and the pause outlives a reload: the page reads it from the state.
    expect(page.locator(".message.tool .text").filter(has_text="croissants")).to_have_count(0)
    page.reload()
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    expect(card).to_have_count(1)
    # Arguments that are not JSON are refused on the page; the call still waits.
    card.locator(".approval-args").fill("{order_id: B-2")
    card.get_by_role("button", name="Run edited").click()
    expect(page.locator("#notice")).to_contain_text("not JSON")
    expect(card).to_have_count(1)
    # Edited, the call runs with the new arguments.
    card.locator(".approval-args").fill('{"order_id": "B-2"}')
    _answer(page, "Run edited")
    expect(card).to_have_count(0)
    expect(page.locator("#message")).to_be_enabled()
    expect(page.locator(".message.tool .text").filter(has_text="no order B-2")).to_have_count(1)
    # Rejected with a reason, it does not run and the model reads why.
    _submit(page, "and where is order A-1?")
    expect(card).to_have_count(1)
    card.locator(".approval-reason").fill("ask the shop instead")
    _answer(page, "Reject")
    expect(card).to_have_count(0)
    expect(page.locator(".message.tool .text").filter(has_text="croissants")).to_have_count(0)
    expect(
        page.locator(".message.tool .text").filter(has_text="ask the shop instead")
    ).to_have_count(1)
    # Approved, it runs as the model asked.
    _submit(page, "then where is order A-1 now?")
    _answer(page, "Approve")
    expect(page.locator(".message.tool .text").filter(has_text="croissants")).to_have_count(1)
    watched.assert_clean()


def _watch_blank(page: Page) -> None:
    """Count, in `window.blank`, every moment the transcript of a session is left empty."""
    page.evaluate(
        """() => {
          window.blank = 0;
          const transcript = document.getElementById('transcript');
          new MutationObserver(() => {
            if (transcript.children.length === 0) window.blank += 1;
          }).observe(transcript, {childList: true});
        }"""
    )


def test_back_and_forward_move_between_sessions(dev_server: str, open_page) -> None:
    """Each session picked is an entry of the browser's history; the reply's reload never
    leaves the transcript blank; the session's count goes up while the reply streams; the
    composer keeps the focus for the next message."""
    watched: Watched = open_page(dev_server)
    page = watched.page
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    _send(page, "in the first session")
    first = page.url.split("#", 1)[1]
    page.click("#new-session")
    expect(page).not_to_have_url(re.compile(re.escape(first) + "$"))
    second = page.url.split("#", 1)[1]
    # The count in the list says 1 as soon as the message is shown, 2 while the reply streams.
    count = page.locator(f'.session[data-thread-id="{second}"] .session-count')
    expect(count).to_have_text("0")
    _watch_blank(page)
    page.fill("#message", "in the second session")
    page.press("#message", "Enter")
    expect(count).to_have_text("2")
    expect(page.locator(".message.streaming")).to_have_count(1)  # still streaming
    expect(page.locator("body")).to_have_attribute("data-sent", "2")
    assert page.evaluate("window.blank") == 0
    assert page.evaluate("document.activeElement.id") == "message"
    # Back: the first session, with its messages; Forward: the second again.
    page.go_back()
    expect(page).to_have_url(re.compile(re.escape(first) + "$"))
    expect(page.locator(".message.user .text")).to_have_text(["in the first session"])
    page.go_forward()
    expect(page).to_have_url(re.compile(re.escape(second) + "$"))
    expect(page.locator(".message.user .text")).to_have_text(["in the second session"])
    # A session picked from the list is an entry too.
    page.locator(f'.session[data-thread-id="{first}"] button').click()
    expect(page.locator(".message.user .text")).to_have_text(["in the first session"])
    page.go_back()
    expect(page.locator(".message.user .text")).to_have_text(["in the second session"])
    watched.assert_clean()


def test_the_page_works_on_a_phone(dev_server: str, browser: Browser) -> None:
    """At 390 px wide: the composer stays in view as the conversation grows, and the
    memories show beside the sessions."""
    context = browser.new_context(viewport={"width": 390, "height": 844})
    context.set_default_timeout(_TIMEOUT_MS)
    try:
        page = context.new_page()
        page.goto(dev_server + "/")
        expect(page.locator("body")).to_have_attribute("data-ready", "true")
        _send(page, "My name is Sam.")
        for i in range(6):
            _send(page, f"line {i} of a conversation that grows past the screen's height")
        for selector in ("#message", "#send", "#memories .memory", "#sessions .session"):
            box = page.locator(selector).first.bounding_box()
            assert box is not None, selector
            assert box["x"] >= 0 and box["x"] + box["width"] <= 390, (selector, box)
            assert box["y"] >= 0 and box["y"] + box["height"] <= 844, (selector, box)
        expect(page.locator("#memories .memory").first).to_contain_text("Sam")
        _screenshot(page, "chat-page-phone.png")
    finally:
        context.close()
