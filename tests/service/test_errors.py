"""Every error code of the contract, against the real server (nothing here waits for a render)."""

from __future__ import annotations

import base64
import time

import httpx
import pytest

from service_support import MODEL, Media, Server, payload, status_of, wait_for

pytestmark = pytest.mark.timeout(120)


def assert_error(response: httpx.Response, status: int, *fragments: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["x-request-id"]
    body = response.json()
    assert set(body) >= {"error"} and "Traceback" not in response.text
    for fragment in fragments:
        assert fragment in body["error"], body["error"]
    return str(body["error"])


def test_401_without_or_with_a_wrong_key(server: Server, media: Media) -> None:
    url = f"{server.base_url}/v2/{MODEL}"
    assert_error(httpx.post(url, json=payload(media)), 401, "x-api-key")
    assert_error(httpx.post(url, json=payload(media), headers={"x-api-key": "sm_nope"}), 401, "invalid")
    assert_error(httpx.get(f"{server.base_url}/v2/requests/abc/status"), 401)


@pytest.mark.parametrize(
    ("body", "fragments"),
    [
        (b"{not json", ("malformed JSON",)),
        (b"[1, 2]", ("JSON object",)),
        (b'{"video": "x"}', ("image",)),
        (b'{"image": "x", "video": "y", "resolution": "4k"}', ("resolution", "720p", "1080p", "4k")),
        (b'{"image": "x", "video": "y", "turbo": "true"}', ("turbo",)),
        (b'{"image": "x", "video": "y", "seed": 1000000000000000}', ("seed", "-1", "999999999999999")),
        (b'{"image": "x", "video": "y", "sampler": "euler"}', ("sampler",)),
        (b'{"image": "x", "video": "y", "target_fps": 24}', ("target_fps",)),
    ],
)
def test_400_names_the_field_and_what_is_allowed(
    server: Server, key: str, body: bytes, fragments: tuple[str, ...]
) -> None:
    with server.client(key) as http:
        for version in ("v1", "v2"):
            answer = http.post(
                f"/{version}/{MODEL}", content=body, headers={"content-type": "application/json"}
            )
            assert_error(answer, 400, *fragments)


def test_400_for_sources_that_can_never_work(server: Server, key: str, media: Media) -> None:
    with server.client(key) as http:
        assert_error(
            http.post(f"/v2/{MODEL}", json=payload(media, image="ftp://example.com/a.png")),
            400,
            "image",
            "ftp",
        )
        assert_error(
            http.post(f"/v2/{MODEL}", json=payload(media, video="http://10.0.0.1/v.mp4")),
            400,
            "video",
            "private",
        )
        junk = "data:image/png;base64," + base64.b64encode(b"not an image at all, no").decode()
        assert_error(http.post(f"/v2/{MODEL}", json=payload(media, image=junk)), 400, "image")
        assert_error(
            http.post(f"/v2/{MODEL}", json=payload(media, webhook_url="ftp://x/y")), 400, "webhook_url"
        )
        assert_error(
            http.post(f"/v2/{MODEL}", json=payload(media, webhook_url="http://169.254.169.254/hook")),
            400,
            "webhook_url",
            "refused",
        )


def test_404_for_unknown_models_requests_and_routes(server: Server, key: str, media: Media) -> None:
    other = server.create_key()
    with server.client(key) as http, server.client(other) as stranger:
        assert_error(http.post("/v2/no-such-model", json=payload(media)), 404, "no-such-model", MODEL)
        assert_error(http.post("/v1/no-such-model", json=payload(media)), 404)
        assert_error(http.get("/v2/requests/0000/status"), 404)
        assert_error(http.get("/v2/requests/0000"), 404)
        assert_error(http.get("/nowhere"), 404)
        # Another key's request is as unknown as a missing one.
        request_id = http.post(f"/v2/{MODEL}", json=payload(media)).json()["request_id"]
        for path in ("/status", "", "/events"):
            assert_error(stranger.get(f"/v2/requests/{request_id}{path}"), 404)
        assert_error(stranger.post(f"/v2/requests/{request_id}/cancel"), 404)
        assert http.post(f"/v2/requests/{request_id}/cancel").json()["status"] == "FAILED"


def test_403_beyond_the_keys_models_or_scopes(server: Server, media: Media) -> None:
    wrong_model = server.create_key("--models", "some-other-model")
    read_only = server.create_key("--scopes", "read")
    with server.client(wrong_model) as http:
        assert_error(http.post(f"/v2/{MODEL}", json=payload(media)), 403, MODEL)
    with server.client(read_only) as http:
        assert_error(http.post(f"/v2/{MODEL}", json=payload(media)), 403, "submit")
        assert_error(
            http.post("/v2/uploads", content=b"x", headers={"content-type": "image/png"}), 403, "upload"
        )


def test_406_when_the_credit_cannot_cover_the_estimate(server: Server, media: Media) -> None:
    poor = server.create_key(credits=0.5)
    inline = "data:video/mp4;base64," + base64.b64encode((media.folder / "long.mp4").read_bytes()).decode()
    with server.client(poor) as http:
        # The inline video is probed at submit: 4 s at 1080p costs 8 credits.
        answer = http.post(f"/v2/{MODEL}", json=payload(media, video=inline, resolution="1080p"))
        message = assert_error(answer, 406, "insufficient credits", "8.008")
        assert "0.5" in message
        # A URL's length is unknown at submit: the first estimate (10 s) is held.
        assert_error(http.post(f"/v2/{MODEL}", json=payload(media)), 406, "insufficient credits")


def test_429_rate_limit_with_headers(server: Server, media: Media) -> None:
    limited = server.create_key("--rate-limit", "2/min")
    with server.client(limited) as http:
        ids = []
        for remaining in (1, 0):
            answer = http.post(f"/v2/{MODEL}", json=payload(media))
            assert answer.status_code == 200
            assert answer.headers["x-ratelimit-limit"] == "2"
            assert answer.headers["x-ratelimit-remaining"] == str(remaining)
            ids.append(answer.json()["request_id"])
        refused = http.post(f"/v2/{MODEL}", json=payload(media))
        assert_error(refused, 429, "rate limit")
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert refused.headers["x-ratelimit-remaining"] == "0"
        assert 0 < int(refused.headers["x-ratelimit-reset"]) <= 60
        for request_id in ids:
            http.post(f"/v2/requests/{request_id}/cancel")


def test_429_concurrency_limit(server: Server, media: Media) -> None:
    single = server.create_key("--concurrency", "1")
    with server.client(single) as http:
        first = http.post(f"/v2/{MODEL}", json=payload(media)).json()["request_id"]
        refused = http.post(f"/v2/{MODEL}", json=payload(media))
        assert_error(refused, 429, "concurrency")
        assert refused.headers["retry-after"]
        http.post(f"/v2/requests/{first}/cancel")
        second = http.post(f"/v2/{MODEL}", json=payload(media))  # a slot is free again
        assert second.status_code == 200
        http.post(f"/v2/requests/{second.json()['request_id']}/cancel")


def test_504_from_v1_past_the_wait_and_the_job_goes_on(server: Server, key: str, media: Media) -> None:
    with server.client(key) as http:
        started = time.monotonic()
        answer = http.post(
            f"/v1/{MODEL}", json=payload(media, video=media.url("long.mp4")), headers={"Prefer": "wait=1"}
        )
        assert time.monotonic() - started < 5
        assert_error(answer, 504, "still running")
        request_id = answer.json()["request_id"]
        assert answer.json()["status_url"].endswith(f"/v2/requests/{request_id}/status")
        assert status_of(http, request_id)["status"] in ("QUEUED", "PROCESSING")
        wait_for(lambda: status_of(http, request_id)["status"] == "PROCESSING", 30)
        http.post(f"/v2/requests/{request_id}/cancel")


def test_uploads_are_checked(server: Server, key: str) -> None:
    with server.client(key) as http:
        assert_error(
            httpx.post(server.base_url + "/v2/uploads", content=b"x", headers={"content-type": "image/png"}),
            401,
        )
        assert_error(
            http.post("/v2/uploads", content=b"{}", headers={"content-type": "application/json"}),
            400,
            "Content-Type",
        )
        assert_error(
            http.post("/v2/uploads", content=b"GIF89a-not-really" * 4, headers={"content-type": "image/png"}),
            400,
            "image",
        )
        assert_error(
            http.post(
                "/v2/uploads", content=b"\0" * (5 * 1024 * 1024), headers={"content-type": "video/mp4"}
            ),
            413,
            "limit",
        )


def test_openapi_and_docs_are_served(server: Server) -> None:
    schema = httpx.get(server.base_url + "/openapi.json").json()
    assert "/v2/{model}" in schema["paths"] and "/v2/requests/{request_id}/status" in schema["paths"]
    body = schema["paths"]["/v2/{model}"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["resolution"]["enum"] == ["720p", "1080p"]
    assert httpx.get(server.base_url + "/docs").status_code == 200
