"""Images, files and audio in messages (LangChain's and OpenAI's content blocks): kept and
passed on as they came, bounded by their own setting instead of the text limit, counted as
a fixed number of tokens, and named plainly by the offline model, which cannot see them."""

from __future__ import annotations

import base64
import os
from typing import Any

import pytest
from langchain_core.messages import HumanMessage

from agent.summarize import TOKENS_PER_ATTACHMENT, message_tokens
from agent.transcript import attachment_kinds, binary_bytes, without_binary
from tests.plugins.server import Api, ApiFactory, fresh_id

LG = "/langgraph"


def _b64(size: int) -> str:
    return base64.b64encode(os.urandom(size)).decode()


def _image(size: int) -> dict[str, Any]:
    """A picture as agent-chat-ui sends it (LangChain v1 content block)."""
    return {
        "type": "image",
        "mimeType": "image/png",
        "data": _b64(size),
        "metadata": {"name": "p.png"},
    }


def _run(*content: Any) -> dict[str, Any]:
    return {
        "assistant_id": "agent",
        "if_not_exists": "create",
        "input": {"messages": [{"role": "user", "content": list(content)}]},
    }


def test_the_binary_data_of_every_block_form_is_measured() -> None:
    data = _b64(3000)
    content = [
        {"type": "text", "text": "look"},
        {"type": "image", "mimeType": "image/png", "data": data},  # LangChain v1
        {"type": "image", "source_type": "base64", "mime_type": "image/png", "data": data},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{data}"}},  # OpenAI
        {"type": "image_url", "image_url": {"url": "https://example.com/p.png"}},  # a link
        {"type": "input_audio", "input_audio": {"data": data, "format": "wav"}},
        {"type": "file", "file": {"file_data": f"data:application/pdf;base64,{data}"}},
    ]
    assert binary_bytes(content) == 5 * 3000
    assert attachment_kinds(content) == ["image", "audio", "file"]
    stripped = without_binary(content)
    assert data not in str(stripped) and "example.com" in str(stripped)
    assert stripped[0] == {"type": "text", "text": "look"}
    assert binary_bytes("plain text") == 0 and attachment_kinds("plain text") == []


def test_a_photo_counts_a_fixed_number_of_tokens() -> None:
    small = HumanMessage([{"type": "text", "text": "look"}, _image(1000)])
    large = HumanMessage([{"type": "text", "text": "look"}, _image(3_000_000)])
    pdf = HumanMessage([{"type": "file", "mimeType": "application/pdf", "data": _b64(500_000)}])
    assert message_tokens(small) == message_tokens(large) < 200
    assert message_tokens(pdf) <= TOKENS_PER_ATTACHMENT + 10


@pytest.fixture
async def api(make_api: ApiFactory) -> Any:
    async with make_api(max_message_chars=2000) as running:
        yield running


async def test_an_image_is_kept_whole_and_the_offline_model_says_it_cannot_see_it(
    api: Api,
) -> None:
    tid = fresh_id("picture")
    image = _image(300_000)  # far past the 2,000-character text limit, in base64
    body = _run({"type": "text", "text": "what is this"}, image)
    response = await api.request("alice", "POST", f"{LG}/threads/{tid}/runs/wait", json=body)
    assert response.status_code == 200, response.text
    reply = response.json()["messages"][-1]["content"]
    assert (
        reply
        == '(offline model) I cannot see the image you sent: I read only text. You said: "what is this". I can remember facts you tell me.'
    )
    state = (await api.request("alice", "GET", f"{LG}/threads/{tid}/state")).json()
    human = state["values"]["messages"][-2]
    assert human["content"][1] == image  # as it came, base64 and all
    page = (await api.request("alice", "GET", f"/threads/{tid}/messages")).json()
    assert page["items"][0]["content"][1]["data"] == image["data"]
    # A picture alone gets the same plain answer.
    alone = await api.request("alice", "POST", f"{LG}/threads/{tid}/runs/wait", json=_run(image))
    assert alone.json()["messages"][-1]["content"] == (
        "(offline model) I cannot see the image you sent: I read only text."
    )


async def test_text_past_the_limit_is_still_a_422(api: Api) -> None:
    body = _run({"type": "text", "text": "x" * 2100}, _image(1000))
    response = await api.request("alice", "POST", f"{LG}/threads/t/runs/wait", json=body)
    assert response.status_code == 422, response.text
    assert "characters; the limit is 2000" in response.json()["detail"]


async def test_too_much_binary_data_is_a_422_naming_the_setting(make_api: ApiFactory) -> None:
    async with make_api(max_attachment_bytes=100_000) as api:
        tid = fresh_id("big")
        body = _run(_image(60_000), _image(60_000))
        response = await api.request("alice", "POST", f"{LG}/threads/{tid}/runs/wait", json=body)
        assert response.status_code == 422, response.text
        detail = response.json()["detail"]
        assert "120000 bytes" in detail and "MEMORY_AGENT_MAX_ATTACHMENT_BYTES" in detail
        assert (await api.request("alice", "GET", f"{LG}/threads/{tid}")).status_code == 404
        fits = await api.request(
            "alice", "POST", f"{LG}/threads/{tid}/runs/wait", json=_run(_image(60_000))
        )
        assert fits.status_code == 200, fits.text
    async with make_api(max_attachment_bytes=0) as api:
        none = await api.request("alice", "POST", f"{LG}/runs/wait", json=_run(_image(10)))
        assert none.status_code == 422 and "the limit is 0" in none.json()["detail"]


async def test_the_body_limit_makes_room_for_attachments_on_runs_only(
    make_api: ApiFactory,
) -> None:
    async with make_api(max_body_bytes=65_536, max_attachment_bytes=1_000_000) as api:
        tid = fresh_id("body")
        big = _run(_image(500_000))  # ~670 KB of JSON
        ran = await api.request("alice", "POST", f"{LG}/threads/{tid}/runs/wait", json=big)
        assert ran.status_code == 200, ran.text
        # Past the room attachments get: 413, naming the limit.
        huge = _run(_image(1_100_000))
        refused = await api.request("alice", "POST", f"{LG}/threads/{tid}/runs/wait", json=huge)
        assert refused.status_code == 413, refused.text
        assert str(65_536 + 4 * -(-1_000_000 // 3)) in refused.json()["detail"]
        # Any other route keeps the plain body limit.
        patch = {"metadata": {"note": "x" * 100_000}}
        other = await api.request("alice", "PATCH", f"{LG}/threads/{tid}", json=patch)
        assert other.status_code == 413 and "65536" in other.json()["detail"]
