"""agent-chat-ui, LangChain's chat UI, built from its pinned source and driven in headless Chromium.

One build (cached, see `tests/agentchatui.py`), one `next start`, one browser and one
`memory-agent serve` for the module; each flow runs against that server (SQLite, API keys on,
CORS for the UI's origin, the built-in agent with `order_status` behind the tool approval and
replies paced over `_PACE` seconds) and, where it can, against `langgraph dev` serving the same
graph as the reference. The UI is pointed at a server by its own means: the `apiUrl` and
`assistantId` query parameters and the API key in local storage, so no rebuild per port.

Set `MEMORY_AGENT_TEST_SCREENSHOTS=<folder>` to save a picture of the UI talking to memory-agent.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlparse

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.agentchatui import API_KEY_STORAGE, BuildError, built_ui, ui_server
from tests.browser import SCREENSHOTS_ENV, chat_server, chromium

pytestmark = pytest.mark.slow

_KEY = "key-sam-agent-chat-ui"
_TIMEOUT_MS = 30_000
#: Seconds each reply of memory-agent's model streams over: long enough to stop or reload it.
_PACE = "offline:slow-2.0"

#: The offline model's answer to a message it has no memory for.
_REPLY = '(offline model) You said: "{}". I can remember facts you tell me.'

expect.set_options(timeout=_TIMEOUT_MS)


@dataclass(frozen=True)
class Target:
    """A LangGraph server as the UI is told of it."""

    name: str
    api_url: str
    api_key: str


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The built UI served by `next start`; its base URL."""
    started = time.monotonic()
    try:
        built = built_ui()
    except BuildError as error:
        pytest.fail(str(error), pytrace=False)
    print(f"agent-chat-ui ready in {time.monotonic() - started:.0f}s at {built}")
    try:
        with ui_server(built, tmp_path_factory.mktemp("ui") / "next.log") as url:
            yield url
    except BuildError as error:
        pytest.fail(str(error), pytrace=False)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def memory_agent(ui: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """`memory-agent serve` with one key, CORS for the UI and the order desk's approval."""
    with chat_server(
        tmp_path_factory.mktemp("memory-agent"),
        f"{_KEY}=acme/sam",
        _PACE,
        cors_origins=ui,
        graph="tests.owngraph:make_order_desk",
        approve_tools="order_status",
    ) as base:
        yield Target("memory-agent", base + "/langgraph", _KEY)


@pytest.fixture(params=["memory-agent", "langgraph-dev"])
def target(request: pytest.FixtureRequest) -> Target:
    """Each server a flow that both can run is run against."""
    if request.param == "memory-agent":
        return request.getfixturevalue("memory_agent")
    return Target("langgraph-dev", request.getfixturevalue("langgraph_dev_url"), "")


class Chat:
    """One browser tab of the UI, on one server."""

    def __init__(self, context: BrowserContext, ui: str, target: Target) -> None:
        self.context = context
        self.ui = ui
        self.target = target
        self.page: Page = context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(f"{e}\n{e.stack}"))

    def open(self, **query: str) -> Chat:
        params = {"apiUrl": self.target.api_url, "assistantId": "agent", **query}
        self.page.goto(f"{self.ui}/?{urlencode(params)}")
        expect(self.composer).to_be_visible()
        return self

    @property
    def composer(self) -> object:
        return self.page.get_by_placeholder("Type your message...")

    @property
    def thread_id(self) -> str | None:
        found = parse_qs(urlparse(self.page.url).query).get("threadId")
        return found[0] if found else None

    def reply_to(self, text: str) -> object:
        """The offline model's answer to `text`, as the page shows it."""
        return self.page.get_by_text(f'You said: "{text}"')

    def type(self, text: str) -> None:
        self.page.get_by_placeholder("Type your message...").fill(text)
        self.page.get_by_role("button", name="Send").click()

    def say(self, text: str) -> None:
        """Send `text` and wait for the answer and the Send button back."""
        self.type(text)
        expect(self.reply_to(text)).to_be_visible()
        expect(self.page.get_by_role("button", name="Send")).to_be_visible()

    def await_card(self) -> None:
        """Wait for the approval card of a paused run, once the page has stopped refreshing.

        The card resets what was typed into it whenever the page renders the interrupt
        again (the end of the stream, the history it then fetches), so it is filled only
        once the thread is paused on the server and the page's requests are done.
        """
        expect(self.page.get_by_role("button", name="Submit rejection")).to_be_visible()
        deadline = time.monotonic() + _TIMEOUT_MS / 1000
        while _status(self.target, self.thread_id or "") != "interrupted":
            assert time.monotonic() < deadline, "the run never paused"
            time.sleep(0.1)
        self.page.wait_for_load_state("networkidle")

    def fill_card(self, box: object, text: str) -> None:
        """Type into the card, again if a late refresh of the card cleared it."""
        handle = box.element_handle()  # type: ignore[attr-defined]
        for _ in range(5):
            handle.fill(text)
            self.page.wait_for_timeout(300)
            if handle.input_value() == text:
                return
        raise AssertionError(f"the card kept clearing {text!r}")

    def assert_no_error_toast(self) -> None:
        expect(self.page.locator('[data-sonner-toast][data-type="error"]')).to_have_count(0)
        assert self.errors == []


@pytest.fixture
def chat(browser: Browser, ui: str) -> Iterator[object]:
    """Open the UI on a server in a fresh browser context (its own local storage)."""
    contexts: list[BrowserContext] = []

    def open_(target: Target, api_key: str | None = None, **query: str) -> Chat:
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        context.set_default_timeout(_TIMEOUT_MS)
        key = target.api_key if api_key is None else api_key
        context.add_init_script(
            f"localStorage.setItem({json.dumps(API_KEY_STORAGE)}, {json.dumps(key)})"
        )
        contexts.append(context)
        return Chat(context, ui, target).open(**query)

    yield open_
    for context in contexts:
        context.close()


def _stored(target: Target, thread_id: str) -> list[tuple[str, str]]:
    """The thread's messages as the server keeps them: (type, text)."""
    headers = {"x-api-key": target.api_key} if target.api_key else {}
    state = httpx.get(f"{target.api_url}/threads/{thread_id}/state", headers=headers, timeout=10)
    assert state.status_code == 200, state.text
    return [(m["type"], _text(m["content"])) for m in state.json()["values"]["messages"]]


def _status(target: Target, thread_id: str) -> str:
    headers = {"x-api-key": target.api_key} if target.api_key else {}
    thread = httpx.get(f"{target.api_url}/threads/{thread_id}", headers=headers, timeout=10)
    return str(thread.json().get("status")) if thread.status_code == 200 else ""


def _text(content: object) -> str:
    """A message's text: the UI sends content blocks (`[{"type": "text", "text": ...}]`)."""
    if isinstance(content, list):
        return "".join(b.get("text", "") for b in content if isinstance(b, dict))
    return str(content)


def _screenshot(page: Page) -> None:
    folder = os.environ.get(SCREENSHOTS_ENV)
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / "agent-chat-ui.png"))


def test_multi_turn_chat(chat: object, target: Target) -> None:
    page = chat(target)  # type: ignore[operator]
    for text in ("first message", "second message", "third message"):
        page.say(text)
    page.assert_no_error_toast()
    thread_id = page.thread_id
    assert thread_id
    stored = _stored(target, thread_id)
    humans = [text for kind, text in stored if kind == "human"]
    assert humans == ["first message", "second message", "third message"]
    assert [kind for kind, _ in stored].count("ai") == 3
    if target.name == "memory-agent":
        _screenshot(page.page)


def test_reload_and_history(chat: object, target: Target) -> None:
    page = chat(target)  # type: ignore[operator]
    page.say("keep this thread")
    thread_id = page.thread_id
    assert thread_id
    page.page.reload()
    expect(page.reply_to("keep this thread")).to_be_visible()
    # A new tab on the UI's start page: the thread list shows the thread; opening it shows it.
    other = chat(target, chatHistoryOpen="true")  # type: ignore[operator]
    other.page.get_by_role("button", name="keep this thread").first.click()
    expect(other.reply_to("keep this thread")).to_be_visible()
    assert other.thread_id == thread_id
    other.assert_no_error_toast()


def test_new_thread(chat: object, target: Target) -> None:
    page = chat(target)  # type: ignore[operator]
    page.say("in the old thread")
    old = page.thread_id
    page.page.get_by_role("button", name="New thread").first.click()
    expect(page.reply_to("in the old thread")).to_have_count(0)
    page.say("in the new thread")
    assert page.thread_id not in (None, old)
    expect(page.reply_to("in the old thread")).to_have_count(0)
    page.assert_no_error_toast()


def test_regenerate(chat: object, target: Target) -> None:
    page = chat(target)  # type: ignore[operator]
    page.say("say it twice")
    page.page.get_by_text('You said: "say it twice"').hover()
    page.page.get_by_role("button", name="Refresh").click()
    expect(page.page.get_by_text(re.compile(r"^2 / 2$"))).to_be_visible()
    expect(page.reply_to("say it twice")).to_be_visible()
    page.assert_no_error_toast()


def test_edit_a_message(chat: object, target: Target) -> None:
    page = chat(target)  # type: ignore[operator]
    page.say("the first draft")
    page.page.get_by_text("the first draft", exact=True).hover()
    page.page.get_by_role("button", name="Edit").click()
    page.page.locator("textarea").first.fill("the second draft")
    page.page.get_by_role("button", name="Submit").click()
    expect(page.reply_to("the second draft")).to_be_visible()
    expect(page.page.get_by_text(re.compile(r"^2 / 2$")).first).to_be_visible()
    page.assert_no_error_toast()


@pytest.mark.parametrize("size", [30_000, 1_500_000], ids=["30KB", "1.5MB"])
def test_an_image_upload(chat: object, target: Target, size: int, tmp_path: Path) -> None:
    """A picture sent with a message is kept whole in the thread, and the offline model says
    it cannot see it (the same graph under `langgraph dev` says the same)."""
    picture = tmp_path / "photo.png"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(size - 8))
    page = chat(target)  # type: ignore[operator]
    page.page.locator("#file-input").set_input_files(str(picture))
    page.type("what is in this picture")
    expect(page.page.get_by_text("I cannot see the image you sent")).to_be_visible()
    expect(page.page.get_by_role("button", name="Send")).to_be_visible()
    page.assert_no_error_toast()
    headers = {"x-api-key": target.api_key} if target.api_key else {}
    state = httpx.get(
        f"{target.api_url}/threads/{page.thread_id}/state", headers=headers, timeout=30
    ).json()
    human, reply = state["values"]["messages"][-2:]
    (image,) = [b for b in human["content"] if b.get("type") == "image"]
    assert image["mimeType"] == "image/png" and len(image["data"]) == 4 * -(-size // 3)
    assert _text(human["content"]) == "what is in this picture"
    assert _text(reply["content"]).startswith("(offline model) I cannot see the image you sent")


# A reply that streams over time is what these need: `langgraph dev` serves the graph with the
# unpaced offline model (its settings come from `langgraph.json`), so its replies are whole
# before a click could stop or a reload could interrupt them.


def test_stop_then_send(chat: object, memory_agent: Target) -> None:
    page = chat(memory_agent)  # type: ignore[operator]
    page.type("stop this one")
    page.page.get_by_role("button", name="Cancel").click()
    page.say("then this one")
    page.assert_no_error_toast()
    stored = _stored(memory_agent, page.thread_id or "")
    assert [text for kind, text in stored if kind == "human"] == ["stop this one", "then this one"]
    assert stored[-1] == ("ai", _REPLY.format("then this one"))


def test_reload_mid_reply(chat: object, memory_agent: Target) -> None:
    """The run goes on after a reload, and the thread shows its reply once it is done.

    agent-chat-ui does not rejoin a run after a reload (it does not pass `useStream`'s
    `reconnectOnMount`) and does not fetch the state again until asked: the reloaded page shows
    the state it loaded mid-run (its SDK shows a `breakpoint` interrupt for a head with `next`
    steps, from `langgraph dev` just the same), and the reply once the page is opened again.
    """
    page = chat(memory_agent)  # type: ignore[operator]
    page.type("keep going while I reload")
    expect(page.page.get_by_role("button", name="Cancel")).to_be_visible()
    page.page.wait_for_function("() => new URLSearchParams(location.search).get('threadId')")
    thread_id = page.thread_id or ""
    page.page.reload()
    assert ("ai", _REPLY.format("keep going while I reload")) not in _stored(
        memory_agent, thread_id
    )
    deadline = time.monotonic() + _TIMEOUT_MS / 1000
    while ("ai", _REPLY.format("keep going while I reload")) not in _stored(
        memory_agent, thread_id
    ):
        assert time.monotonic() < deadline, _stored(memory_agent, thread_id)
        time.sleep(0.2)
    page.page.reload()
    expect(page.reply_to("keep going while I reload")).to_be_visible()
    page.assert_no_error_toast()


# `langgraph dev` serves the built-in agent without an approved tool, and without API keys.


def test_tool_approval_card(chat: object, memory_agent: Target) -> None:
    page = chat(memory_agent)  # type: ignore[operator]
    page.type("where is order A-1?")
    page.await_card()
    page.page.get_by_role("button", name="Approve", exact=True).click()
    expect(page.page.get_by_text("Noted: two croissants, ready at 9:00")).to_be_visible()
    page.assert_no_error_toast()
    stored = _stored(memory_agent, page.thread_id or "")
    assert ("tool", "two croissants, ready at 9:00") in stored
    # The UI refreshes its thread list 4 s after a thread is created, and that refresh
    # resets an open card (what was typed into it is lost, Approve is selected again):
    # let it happen before typing into one.
    expect(page.page.get_by_role("button", name="where is order A-1?")).to_be_visible()

    page.type("and where is order B-2?")
    page.await_card()
    page.fill_card(page.page.get_by_placeholder("Share feedback with the agent..."), "not today")
    page.page.get_by_role("button", name="Submit rejection").click()
    expect(page.page.get_by_text(re.compile("not today")).last).to_be_visible()
    stored = _stored(memory_agent, page.thread_id or "")
    assert not any(kind == "tool" and "no order B-2" in text for kind, text in stored)

    # Edited: the call runs with the arguments the card was given.
    page.type("then where is order A-1 now?")
    page.await_card()
    page.fill_card(page.page.get_by_role("textbox").filter(has_text="A-1").last, "C-3")
    page.page.get_by_role("button", name="Submit", exact=True).click()
    expect(page.page.get_by_text("Noted: no order C-3")).to_be_visible()
    assert ("tool", "no order C-3") in _stored(memory_agent, page.thread_id or "")
    page.assert_no_error_toast()


def test_wrong_key_warns(chat: object, memory_agent: Target) -> None:
    page = chat(memory_agent, api_key="not-a-key")  # type: ignore[operator]
    expect(page.page.get_by_text("Failed to connect to LangGraph server")).to_be_visible()
