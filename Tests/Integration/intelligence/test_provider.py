"""The Intelligence plugin's model provider layer against the local OpenAI-compatible test
server (Tests/Support/openai_server.py): per-portal settings at /intelligence/v1/provider,
the API key read from the portal's Vault and sent as a Bearer token only to the provider,
plain and streamed (SSE) completions, embeddings, errors explained in words, the kernel's
egress policy, and tokens metered per portal."""

from __future__ import annotations

import json
import re
import time

import httpx
import pytest

import llmkit

SETTINGS = "/intelligence/v1/provider"


def settings_url(portal) -> str:
    return f"{portal.base}{SETTINGS}"


def check(portal) -> dict:
    """POST /provider/test as service_role; the answer's JSON."""
    response = portal.request("POST", settings_url(portal) + "/test")
    assert response.status_code == 200, response.text
    return response.json()


def usage(portal) -> dict[str, float]:
    """This kernel's Intelligence counters of `portal` on /metrics (flushed each second)."""
    text = httpx.get(portal.kernel.url + "/metrics", timeout=30).text
    pattern = re.compile(r'^meltybase_usage_counter_total\{portal="' + re.escape(portal.name)
                         + r'",plugin="intelligence",metric="([a-z_]+)"\} ([0-9.e+]+)$', re.M)
    return {metric: float(value) for metric, value in pattern.findall(text)}


@pytest.fixture(scope="module")
def plain_portal(new_portal):
    """One portal on the shared kernel for the validation tests (they never configure it)."""
    return new_portal()


def test_unconfigured_portal_says_what_works_without_a_provider(new_portal):
    portal = new_portal()
    response = portal.request("GET", settings_url(portal))
    assert response.status_code == 200, response.text
    assert response.json()["configured"] is False
    assert "deterministic" in response.json()["message"]
    tested = portal.request("POST", settings_url(portal) + "/test")
    assert tested.status_code == 409 and tested.json()["code"] == "provider_not_configured", tested.text


def test_settings_need_service_role(new_portal):
    portal = new_portal()
    for method in ("GET", "PUT", "DELETE", "POST"):
        url = settings_url(portal) + ("/test" if method == "POST" else "")
        anon = portal.request(method, url, key=portal.anon, json={})
        assert anon.status_code == 403 and anon.json()["code"] == "forbidden", anon.text
        nobody = httpx.request(method, url, json={}, timeout=30)
        assert nobody.status_code == 401, nobody.text
        forged = httpx.request(method, url, json={}, headers={"authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.e30.x"}, timeout=30)
        assert forged.status_code == 401, forged.text


@pytest.mark.parametrize("body, field", [
    ({"chat_model": "m"}, "base_url"),
    ({"base_url": "ftp://example.com/v1", "chat_model": "m"}, "base_url"),
    ({"base_url": "https://user:pass@example.com/v1", "chat_model": "m"}, "credentials"),
    ({"base_url": "https://example.com/v1?key=abc", "chat_model": "m"}, "query"),
    ({"base_url": "https://exa\u0000mple.com/v1", "chat_model": "m"}, "base_url"),
    ({"base_url": "https://example.com/" + "a" * 5000, "chat_model": "m"}, "base_url"),
    ({"base_url": "https://example.com:99999/v1", "chat_model": "m"}, "base_url"),
    ({"base_url": "/v1", "chat_model": "m"}, "base_url"),
    ({"base_url": "https://example.com/v1"}, "chat_model"),
    ({"base_url": "https://example.com/v1", "chat_model": ""}, "chat_model"),
    ({"base_url": "https://example.com/v1", "chat_model": "m\u0000"}, "chat_model"),
    ({"base_url": "https://example.com/v1", "chat_model": "m" * 300}, "chat_model"),
    ({"base_url": "https://example.com/v1", "chat_model": 7}, "chat_model"),
    ({"base_url": "https://example.com/v1", "chat_model": "m", "api_key_secret": "sk-live key with spaces"}, "api_key_secret"),
    ({"base_url": "https://example.com/v1", "chat_model": "m", "api_key_secret": "x'; DROP TABLE intelligence.provider_settings; --"}, "api_key_secret"),
    ({"base_url": "https://example.com/v1", "chat_model": "m", "timeout_seconds": 1e300}, "timeout_seconds"),
    ({"base_url": "https://example.com/v1", "chat_model": "m", "timeout_seconds": 0}, "timeout_seconds"),
    ({"base_url": "https://example.com/v1", "chat_model": "m", "timeout_seconds": 2.5}, "timeout_seconds"),
    ({"base_url": "https://example.com/v1", "chat_model": "m", "max_tokens": -1}, "max_tokens"),
    ({"base_url": "https://example.com/v1", "chat_model": "m", "max_tokens": 99999999999999999999}, "max_tokens"),
    ({"base_url": "https://example.com/v1", "chat_model": "m", "stream": "yes"}, "stream"),
    ({"base_url": "https://example.com/v1", "chat_model": "m", "api_key": "sk-live-123"}, "unknown member"),
])
def test_bad_settings_are_refused_with_a_clear_400(plain_portal, body, field):
    portal = plain_portal
    response = portal.request("PUT", settings_url(portal), json=body)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "invalid_request"
    assert field in response.json()["message"], response.text
    assert portal.request("GET", settings_url(portal)).json()["configured"] is False


def test_non_json_and_oversized_bodies_are_refused(new_portal):
    portal = new_portal()
    for body in (b"not json", b"[1, 2]", b"\x00\xff"):
        response = portal.request("PUT", settings_url(portal), content=body)
        assert response.status_code == 400 and response.json()["code"] == "invalid_json", response.text
    response = portal.request("PUT", settings_url(portal), content=b'{"x": "' + b"a" * 100_000 + b'"}')
    assert response.status_code == 413, response.text


def test_settings_round_trip_without_the_key(llm, new_llm_portal):
    llm.reset()
    portal = new_llm_portal()
    answered = llmkit.configure_portal(portal, llm, stream=True, timeout_seconds=30, max_tokens=128)
    got = portal.request("GET", settings_url(portal)).json()
    assert got == answered
    assert got["configured"] is True and got["base_url"] == llm.base_url and got["api_key_secret"] == llmkit.DEFAULT_SECRET
    assert got["stream"] is True and got["timeout_seconds"] == 30 and got["max_tokens"] == 128
    assert got["chat_model"] == "test-chat" and got["embedding_model"] == "test-embed"
    assert llmkit.DEFAULT_KEY not in portal.request("GET", settings_url(portal)).text
    # Nothing was sent to the provider by configuring it.
    assert llm.requests() == []
    deleted = portal.request("DELETE", settings_url(portal))
    assert deleted.status_code == 200 and deleted.json()["deleted"] is True, deleted.text
    assert portal.request("GET", settings_url(portal)).json()["configured"] is False


def test_plain_completion_sends_the_vault_key_only_to_the_provider(llm, llm_portal):
    llm.script([{"content": "ok", "usage": {"prompt_tokens": 11, "completion_tokens": 1}}])
    answer = check(llm_portal)
    assert answer["ok"] is True, answer
    assert answer["reply"] == "ok" and answer["finish_reason"] == "stop"
    assert answer["prompt_tokens"] == 11 and answer["completion_tokens"] == 1
    assert answer["embedding_dimensions"] == 64
    requests = llm.requests()
    assert [entry["path"] for entry in requests] == ["/v1/chat/completions", "/v1/embeddings"]
    for entry in requests:
        assert entry["headers"]["authorization"] == f"Bearer {llmkit.DEFAULT_KEY}"
    body = requests[0]["body"]
    assert body["model"] == "test-chat" and "stream" not in body
    assert [message["role"] for message in body["messages"]] == ["system", "user"]
    assert requests[1]["body"] == {"model": "test-embed", "input": ["ping"], "encoding_format": "float"}
    assert llmkit.DEFAULT_KEY not in llm_portal.kernel.log_text()


def test_streamed_completion_is_assembled_from_sse(llm, new_llm_portal):
    llm.reset()
    portal = new_llm_portal()
    llmkit.configure_portal(portal, llm, stream=True, embedding_model=None)
    llm.script([{"content": "streamed answer, in several pieces", "comments": True}])
    answer = check(portal)
    assert answer["ok"] is True, answer
    assert answer["reply"] == "streamed answer, in several pieces"
    assert answer["completion_tokens"] > 0, answer  # from the usage chunk (include_usage)
    body = llm.chat_requests()[0]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert "embedding_dimensions" not in answer


def test_keyless_local_server(llm, new_llm_portal):
    llm.reset()
    portal = new_llm_portal()
    llmkit.configure_portal(portal, llm, api_key=None)
    llm.script([{"content": "ok"}])
    assert check(portal)["ok"] is True
    assert "authorization" not in llm.requests()[0]["headers"]


@pytest.mark.parametrize("turn, kind, words", [
    ({"status": 429, "error": "Rate limit reached for requests", "retry_after": 5}, "rate_limited", "rate limiting"),
    ({"status": 500, "error": "The server had an error"}, "server_error", "failed (HTTP 500)"),
    ({"status": 404, "error": "The model `test-chat` does not exist"}, "not_found", "model's name"),
    ({"status": 400, "error": "This model's maximum context length is 8192 tokens"}, "rejected", "maximum context length"),
    ({"raw": "{\"choices\": [{\"message\": "}, "malformed", "not a JSON object"),
    ({"raw": "<html>502 Bad Gateway</html>", "status": 502, "content_type": "text/html"}, "server_error", "Bad Gateway"),
    ({"content": "late", "delay": 4}, "timeout", "did not answer within 2 s"),
])
def test_provider_failures_are_explained(llm, new_llm_portal, turn, kind, words):
    llm.reset()
    portal = new_llm_portal()
    llmkit.configure_portal(portal, llm, timeout_seconds=2)
    llm.script([turn])
    answer = check(portal)
    assert answer["ok"] is False, answer
    assert answer["error"] == kind, answer
    assert words in answer["message"], answer
    assert llm.base_url in answer["message"], answer
    assert llmkit.DEFAULT_KEY not in str(answer)
    if kind == "rate_limited":
        assert answer["retry_after_seconds"] == 5 and answer["provider_status"] == 429


def test_wrong_key_is_reported_without_revealing_it(llm, new_llm_portal):
    llm.reset()
    portal = new_llm_portal()
    llmkit.configure_portal(portal, llm, api_key="sk-wrong-0123456789abcdef")
    llm.require_key("sk-the-right-one-000000")
    answer = check(portal)
    assert answer["ok"] is False and answer["error"] == "unauthorized", answer
    assert "api_key_secret" in answer["message"] and llm.base_url in answer["message"]
    assert "sk-wrong-0123456789abcdef" not in str(answer)
    assert "sk-wrong-0123456789abcdef" not in portal.kernel.log_text()
    # The portal stores the right key in its Vault: the next call reads it again.
    llmkit.store_secret(portal, llmkit.DEFAULT_SECRET, "sk-the-right-one-000000")
    llm.script([{"content": "ok"}])
    assert check(portal)["ok"] is True
    assert llm.requests()[-2]["headers"]["authorization"] == "Bearer sk-the-right-one-000000"


def test_missing_vault_secret_is_named(llm, new_llm_portal):
    llm.reset()
    portal = new_llm_portal()
    response = portal.request("PUT", settings_url(portal), json=llmkit.provider_settings(llm, secret="NO_SUCH_SECRET"))
    assert response.status_code == 200, response.text
    answer = check(portal)
    assert answer["ok"] is False and answer["error"] == "unauthorized", answer
    assert "NO_SUCH_SECRET" in answer["message"], answer
    assert llm.requests() == []


def test_egress_policy_applies(llm, new_portal):
    """The shared kernel's Intelligence plugin has no egress_hosts: loopback is refused."""
    llm.reset()
    portal = new_portal()
    llmkit.configure_portal(portal, llm)
    answer = check(portal)
    assert answer["ok"] is False and answer["error"] == "egress_refused", answer
    assert "egress_hosts" in answer["message"]
    assert llm.requests() == []


def test_tokens_and_requests_are_metered_per_portal(llm, llm_portal):
    llm.script([{"content": "ok", "usage": {"prompt_tokens": 40, "completion_tokens": 2}}])
    answer = check(llm_portal)
    assert answer["ok"] is True, answer
    # One completion (42 tokens) and one embedding request (1 token: "ping").
    deadline = time.monotonic() + 20
    while True:
        counted = usage(llm_portal)
        if counted.get("llm_tokens") == 43 and counted.get("llm_requests") == 2:
            break
        assert time.monotonic() < deadline, counted
        time.sleep(0.5)


def test_settings_of_one_portal_do_not_leak_to_another(llm, llm_portal, new_llm_portal):
    other = new_llm_portal()
    assert other.request("GET", settings_url(other)).json()["configured"] is False
    llm.script([{"content": "ok"}])
    assert check(llm_portal)["ok"] is True
    tested = other.request("POST", settings_url(other) + "/test")
    assert tested.status_code == 409, tested.text
    # A key of the first portal does not work on the second.
    foreign = other.request("GET", settings_url(other), key=llm_portal.service)
    assert foreign.status_code == 401, foreign.text


def test_hostile_but_valid_names_are_stored_verbatim(plain_portal):
    """Model names are data: quotes, SQL keywords and any Unicode round-trip unchanged."""
    names = ["m'); DROP TABLE intelligence.provider_settings; --", "模型-🚀-\u202e-ünï", "a" * 256]
    for name in names:
        body = {"base_url": "https://example.com/v1/", "chat_model": name, "embedding_model": name, "api_key_secret": "A.b-c_9"}
        response = plain_portal.request("PUT", settings_url(plain_portal), json=body)
        assert response.status_code == 200, response.text
        got = plain_portal.request("GET", settings_url(plain_portal)).json()
        assert got["chat_model"] == name and got["embedding_model"] == name
        assert got["base_url"] == "https://example.com/v1"
    assert plain_portal.request("DELETE", settings_url(plain_portal)).status_code == 200


def test_test_server_streams_like_openai(llm):
    """The test server itself: what the other tests rely on is OpenAI's exact SSE shape."""
    llm.reset()
    llm.script([{"content": "Hi there", "tool_calls": [{"name": "lookup", "arguments": {"q": "a b c", "n": 3}}],
                 "usage": {"prompt_tokens": 7, "completion_tokens": 5}}])
    response = httpx.post(llm.base_url + "/chat/completions", timeout=30, json={
        "model": "test-chat", "stream": True, "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "x"}]})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    events = llmkit.sse_events(response.text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(chunk["choices"][0]["delta"].get("content") or "" for chunk in chunks if chunk["choices"])
    assert text == "Hi there"
    calls = [call for chunk in chunks if chunk["choices"] for call in chunk["choices"][0]["delta"].get("tool_calls", [])]
    assert len(calls) > 2 and all(call["index"] == 0 for call in calls)
    assert calls[0]["id"].startswith("call_") and calls[0]["function"] == {"name": "lookup", "arguments": ""}
    arguments = "".join(call["function"]["arguments"] for call in calls)
    assert json.loads(arguments) == {"q": "a b c", "n": 3}
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 12
    empty = httpx.post(llm.base_url + "/chat/completions", timeout=30, json={"model": "m", "messages": [{"role": "user", "content": "x"}]})
    assert empty.status_code == 500 and "did not script" in empty.json()["error"]["message"]
    bad = httpx.post(llm.url + "/__script", timeout=30, json=[{"tool_calls": [{"arguments": {}}]}])
    assert bad.status_code == 400


@pytest.mark.parametrize("stream", [False, True])
def test_tool_call_check_goes_through_the_agents_chat_model(llm, new_llm_portal, stream):
    llm.reset()
    portal = new_llm_portal()
    llmkit.configure_portal(portal, llm, stream=stream, embedding_model=None)
    arguments = {"status": "ok", "note": "ünïcode \"quoted\" {braces}"}
    llm.script([{"content": "ok"}, {"tool_calls": [{"name": "report_status", "arguments": arguments}]}])
    response = portal.request("POST", settings_url(portal) + "/test", json={"tool_call": True})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["ok"] is True and answer["tool_call_supported"] is True, answer
    assert [call["name"] for call in answer["tool_calls"]] == ["report_status"]
    assert json.loads(answer["tool_calls"][0]["arguments"]) == arguments
    sent = llm.chat_requests()[1]
    assert sent["tools"][0]["type"] == "function" and sent["tools"][0]["function"]["name"] == "report_status"
    assert sent["tools"][0]["function"]["parameters"]["required"] == ["status"]
    assert sent.get("stream", False) is stream


def test_tool_call_check_says_when_the_model_does_not_call_tools(llm, llm_portal):
    llm.script([{"content": "ok"}, {"content": "I cannot call tools."}])
    answer = llm_portal.request("POST", settings_url(llm_portal) + "/test", json={"tool_call": True}).json()
    assert answer["ok"] is True and answer["tool_call_supported"] is False, answer
    assert "did not call the offered tool" in answer["message"]
    for body in ({"tool_call": "yes"}, {"other": 1}, [1]):
        refused = llm_portal.request("POST", settings_url(llm_portal) + "/test", json=body)
        assert refused.status_code == 400, refused.text
