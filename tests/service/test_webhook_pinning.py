"""Webhooks connect to the addresses that were vetted, never to a fresh DNS answer."""

from __future__ import annotations

import asyncio
import http.server
import ipaddress

import httpx

from stillmotion.service.webhooks import _post_pinned

from http_support import serve_http


def test_a_webhook_goes_to_the_vetted_address_with_its_own_host_name():
    seen: dict[str, str] = {}

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen["host"] = self.headers["Host"]
            seen["body"] = self.rfile.read(int(self.headers["Content-Length"])).decode()
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    async def post(url: str) -> httpx.Response:
        async with httpx.AsyncClient(trust_env=False) as client:
            return await _post_pinned(client, url, [ipaddress.ip_address("127.0.0.1")], content=b"{}")

    with serve_http(Receiver) as base:
        port = base.rsplit(":", 1)[1]
        # ".invalid" never resolves (RFC 6761): only a request sent to the vetted address can arrive.
        response = asyncio.run(post(f"http://hooks.example.invalid:{port}/in"))
    assert response.status_code == 204
    assert seen == {"host": f"hooks.example.invalid:{port}", "body": "{}"}
