"""The OpenAI-compatible backend against a real HTTP server on loopback."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tea_helpers import assert_one_line_error, final_state, run_tea

AGENT = """
name: api-chat
settings:
  llm:
    backend: {backend}
    model: tiny
nodes:
  - name: ask
    uses: llm.call
    with:
      messages:
        - role: user
          content: "{{{{ state.question }}}}"
      temperature: 0
      max_tokens: 8
    output: reply
"""


class FakeCompletions(BaseHTTPRequestHandler):
    """Answers /v1/chat/completions by echoing the last message; records what it was sent."""

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append((self.path, self.headers.get("Authorization"), body))
        if self.path != "/v1/chat/completions":
            self.send_error(404)
            return
        reply = {"model": body["model"], "usage": {"prompt_tokens": 3, "completion_tokens": 2},
                 "choices": [{"message": {"role": "assistant", "content": "echo: " + body["messages"][-1]["content"]}}]}
        payload = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeCompletions)
    httpd.requests = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize("backend", ["api", "openai"])
def test_api_backend_round_trip(server, write_agent, backend):
    api_base = f"http://127.0.0.1:{server.server_port}/v1"
    env = {"OPENAI_API_BASE": api_base, "OPENAI_API_KEY": "sk-test"}
    state = final_state(run_tea("run", write_agent(AGENT.format(backend=backend)), "--input",
                                '{"question": "ping"}', env=env))
    assert state["reply"] == {"content": "echo: ping", "usage": {"prompt_tokens": 3, "completion_tokens": 2},
                              "model": "tiny", "backend": "api", "tokens_used": 5}
    path, authorization, body = server.requests[0]
    assert (authorization, body["temperature"], body["max_tokens"]) == ("Bearer sk-test", 0.0, 8)


def test_failed_call_returns_upstreams_error_shape_and_warns(server, write_agent):
    """Upstream's LLM actions return {success: false, error} on a failed call: the agent goes on and can
    branch on it; the warning is one stderr line."""
    env = {"OPENAI_API_BASE": f"http://127.0.0.1:{server.server_port}/wrong"}
    result = run_tea("run", write_agent(AGENT.format(backend="api")), "--input", '{"question": "x"}', env=env)
    reply = final_state(result)["reply"]
    assert reply["success"] is False and "HTTP 404" in reply["error"]
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "LLM call failed" in warnings[0] and "HTTP 404" in warnings[0]


def test_unreachable_endpoint_is_an_error_result(write_agent):
    env = {"OPENAI_API_BASE": "http://127.0.0.1:9/v1"}  # discard port: nothing listens
    agent = write_agent(AGENT.format(backend="api"))
    reply = final_state(run_tea("run", "-q", agent, "-i", '{"question": "x"}', env=env))["reply"]
    assert reply == {"success": False, "error": "http://127.0.0.1:9/v1/chat/completions: request failed: ConnectionError"}


def test_api_backend_without_endpoint(write_agent, monkeypatch):
    monkeypatch.delenv("OPENAI_API_BASE", raising=False)
    result = run_tea("run", "--quiet", write_agent(AGENT.format(backend="api")), "--input", '{"question": "x"}')
    assert_one_line_error(result, "needs settings.llm.api_base")


def test_message_content_from_a_number_is_sent_as_text(server, write_agent):
    env = {"OPENAI_API_BASE": f"http://127.0.0.1:{server.server_port}/v1"}
    state = final_state(run_tea("run", "-q", write_agent(AGENT.format(backend="api")), "-i", '{"question": 4}',
                                env=env))
    assert state["reply"]["content"] == "echo: 4"
    assert server.requests[0][2]["messages"] == [{"role": "user", "content": "4"}]
