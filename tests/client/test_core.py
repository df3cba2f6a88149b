"""The client's sans-I/O core: requests as data, answers into results or errors, retry
decisions and delays, the event-stream parser, the key and the URL. No socket here
(tests/client/test_transport.py and tests/hub/test_client.py send for real)."""

from __future__ import annotations

import email.parser
import json
import random

import pytest

from cloud_hub.privacy import sign
from twinsync.client import (
    AuthenticationError,
    BadRequestError,
    ClientConfigError,
    ClientError,
    ConflictError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RequestRefusedError,
    ResponseError,
    RetryPolicy,
    SegmentChange,
    ServerError,
    StreamOverflow,
    TransportError,
    TwinPage,
    UnavailableError,
    verify_webhook,
)
from twinsync.client.testing import (
    BaseUrl,
    Calls,
    EventParser,
    Response,
    StreamReader,
    api_error,
    json_result,
    multipart,
    outcome,
    resolve_api_key,
    stream_item,
)

TWIN = "1-" + "ab" * 16


def _error(status: int, code: str = "x", headers: dict[str, str] | None = None) -> Response:
    body = json.dumps({"error": {"code": code, "message": f"fix {code}"}}).encode()
    return Response(status, headers or {}, body)


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (405, BadRequestError),
        (409, ConflictError),
        (413, PayloadTooLargeError),
        (418, RequestRefusedError),
        (422, BadRequestError),
        (500, ServerError),
        (503, UnavailableError),
    ],
)
def test_each_status_is_its_class_with_the_hubs_code_and_message(
    status: int, cls: type[ClientError]
) -> None:
    error = api_error(_error(status, "bad_limit"), "list_twins")
    assert type(error) is cls
    assert (error.status, error.code, error.message) == (status, "bad_limit", "fix bad_limit")
    assert error.reason == "bad_limit"
    assert str(error) == f"list_twins: {status} bad_limit: fix bad_limit"


def test_retry_after_is_read_and_a_proxy_page_still_becomes_an_error() -> None:
    assert api_error(_error(503, headers={"retry-after": "5"}), "x").retry_after == 5.0
    assert api_error(_error(503, headers={"retry-after": "soon"}), "x").retry_after is None
    page = Response(502, {}, b"<html>Bad Gateway</html>" + b"x" * 1000)
    error = api_error(page, "get_twin")
    assert (type(error), error.code) == (ServerError, "http_502")
    assert error.message.startswith("<html>Bad Gateway")
    assert len(error.message) == 200


def test_an_answer_of_another_shape_is_a_response_error_naming_the_problem() -> None:
    call = Calls("acme").list_twins()
    good = outcome(call, Response(200, {}, b'{"brand":"acme","twins":["a"],"later":1}'))
    assert good == TwinPage(brand="acme", twins=("a",))  # unknown members ignored
    with pytest.raises(ResponseError, match=r"not a TwinPage: twins: Field required"):
        outcome(call, Response(200, {}, b'{"brand":"acme"}'))
    with pytest.raises(ResponseError, match="not a TwinPage"):
        json_result(TwinPage)(Response(200, {}, b"<html>"))
    with pytest.raises(NotFoundError):
        outcome(call, _error(404))


def test_requests_are_built_with_encoded_paths_and_only_given_parameters() -> None:
    calls = Calls("acme")
    assert calls.list_twins().request.path == "/v1/brands/acme/twins"
    page = calls.list_twins(limit=10, after=TWIN).request
    assert page.path == f"/v1/brands/acme/twins?limit=10&after={TWIN}"
    assert (page.method, page.idempotent) == ("GET", True)
    # A value cannot change the route: "/" and "?" are encoded.
    sneaky = calls.get_twin("../keys?x=").request
    assert sneaky.path == "/v1/brands/acme/twins/..%2Fkeys%3Fx%3D"
    erase = calls.request_erasure("ann@example.com").request
    assert (erase.method, erase.idempotent) == ("POST", False)
    assert json.loads(erase.body or b"") == {"subject": "ann@example.com"}
    assert "ann" not in erase.path  # the subject travels in the body only
    assert "ann" not in repr(erase)  # and a request's repr leaves the body out
    assert calls.put_cohort("beta", ["d1"]).request.idempotent
    assert calls.revoke_key("0" * 12).request.idempotent
    assert not calls.set_webhook("https://x").request.idempotent  # a new secret each time
    rectify = calls.request_rectification("ann", values={"coffee.strength": 3}).request
    assert json.loads(rectify.body or b"") == {"subject": "ann", "set": {"coffee.strength": 3}}
    rollout = calls.create_rollout("churn-coffee@2", percent=10).request
    assert json.loads(rollout.body or b"") == {
        "model": "churn-coffee@2",
        "target": {"percent": 10},
    }


def test_a_next_page_elsewhere_is_refused() -> None:
    """The key goes only to the brand's own routes on the hub named."""
    calls = Calls("acme")
    assert calls.follow("list_twins", "/v1/brands/acme/twins?after=x", TwinPage).request
    for bad in ("https://evil.example/v1/brands/acme/twins", "/v1/brands/other/twins", "//x/"):
        with pytest.raises(ClientConfigError):
            calls.follow("list_twins", bad, TwinPage)


def test_the_multipart_body_is_what_a_mail_parser_reads() -> None:
    body, content_type = multipart(
        [("manifest", None, "application/json", b'{"a":1}'), ("model", "m.onnx", "x/y", b"\0\1")]
    )
    message = email.parser.BytesParser().parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    parts = [
        (p.get_param("name", header="content-disposition"), p.get_payload(decode=True))
        for p in message.get_payload()
    ]  # type: ignore[union-attr]
    assert parts == [("manifest", b'{"a":1}'), ("model", b"\0\1")]


def test_retries_only_idempotent_calls_on_503_or_no_answer() -> None:
    policy = RetryPolicy(attempts=3)
    read = Calls("acme").list_twins().request
    change = Calls("acme").request_erasure("ann").request
    unavailable = api_error(_error(503), "x")
    assert policy.retries(read, unavailable, 1)
    assert policy.retries(read, TransportError("gone"), 2)
    assert not policy.retries(read, unavailable, 3)  # the last try
    assert not policy.retries(change, unavailable, 1)
    assert not policy.retries(change, TransportError("gone"), 1)
    for status in (400, 401, 404, 500, 502):
        assert not policy.retries(read, api_error(_error(status), "x"), 1)
    assert not policy.retries(read, ResponseError("garbled"), 1)
    assert not RetryPolicy(attempts=1).retries(read, unavailable, 1)


def test_delays_double_with_jitter_up_to_the_cap_and_respect_retry_after() -> None:
    policy = RetryPolicy(attempts=10, backoff_s=0.5, max_backoff_s=4.0)
    rng = random.Random(1)
    gone = TransportError("gone")
    for attempt, ceiling in ((1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (8, 4.0)):
        waits = [policy.delay(attempt, gone, rng) for _ in range(200)]
        assert ceiling / 2 <= min(waits) < max(waits) <= ceiling
    busy = api_error(_error(503, headers={"retry-after": "3"}), "x")
    assert all(policy.delay(1, busy, rng) >= 3.0 for _ in range(50))
    patient = api_error(_error(503, headers={"retry-after": "60"}), "x")
    assert policy.delay(1, patient, rng) == 4.0  # never longer than the cap
    with pytest.raises(ClientConfigError):
        RetryPolicy(attempts=0)
    with pytest.raises(ClientConfigError):
        RetryPolicy(backoff_s=2, max_backoff_s=1)


def test_the_event_parser_reads_the_hubs_stream() -> None:
    change = {"twin": TWIN, "time_ms": 5, "device": "d", "from": None, "to": 2, "model": None}
    stream = (
        b": keepalive\n\n"
        + f"id: 5\r\nevent: segment_change\r\ndata: {json.dumps(change)}\r\n\r\n".encode()
        + b'event: overflow\ndata: {"dropped": 7}\n\n'
        + b"event: future_thing\ndata: {}\n\n"
        + b"data: first\ndata: second\n\n"
    )
    parser = EventParser()
    events = [e for line in stream.splitlines(keepends=True) if (e := parser.line(line))]
    assert [(e.event, e.id) for e in events] == [
        ("segment_change", "5"),
        ("overflow", "5"),
        ("future_thing", "5"),
        ("message", "5"),
    ]
    assert events[3].data == "first\nsecond"
    items = [stream_item(e) for e in events]
    assert items[0] == SegmentChange(
        twin=TWIN, time_ms=5, device="d", to=2, model=None, **{"from": None}
    )
    assert items[1] == StreamOverflow(dropped=7)
    assert items[2:] == [None, None]  # types a client does not know are skipped
    broken = EventParser()
    broken.line(b"event: segment_change\n")
    broken.line(b"data: {not json\n")
    event = broken.line(b"\n")
    assert event is not None
    with pytest.raises(ResponseError, match="unreadable segment_change event"):
        stream_item(event)
    with pytest.raises(ResponseError):
        parser.line(b"x" * (1 << 21))


def test_the_stream_reader_yields_known_items_and_remembers_every_id() -> None:
    """Both transports read through it: an event of a type the client does not know
    yields nothing but still moves the resume position."""
    reader = StreamReader()
    lines = [
        b": keepalive\n", b"\n",
        b"id: 7\n", b'event: overflow\n', b'data: {"dropped": 2}\n', b"\n",
        b"id: 9\n", b"event: future_thing\n", b"data: {}\n", b"\n",
    ]  # fmt: skip
    items = [reader.feed(line) for line in lines]
    assert [i for i in items if i is not None] == [StreamOverflow(dropped=2)]
    assert items[5] == StreamOverflow(dropped=2)  # yielded by the blank line ending it
    assert reader.last_event_id == "9"


def test_the_key_comes_from_the_argument_or_the_environment_and_is_never_quoted() -> None:
    key = "tsk_0123456789ab_" + "s" * 43
    assert resolve_api_key(key, {}) == key
    assert resolve_api_key(None, {"TWINSYNC_API_KEY": key}) == key
    assert resolve_api_key(key, {"TWINSYNC_API_KEY": "other"}) == key
    with pytest.raises(ClientConfigError, match="TWINSYNC_API_KEY"):
        resolve_api_key(None, {})
    for bad in (f"{key}\r\nX-Evil: 1", f"{key} ", "tsk_é"):
        with pytest.raises(ClientConfigError) as refused:
            resolve_api_key(bad, {})
        assert key not in str(refused.value)
        assert "tsk_é" not in str(refused.value)


def test_the_base_url_is_checked() -> None:
    assert str(BaseUrl.parse("http://localhost:8080")) == "http://localhost:8080"
    assert str(BaseUrl.parse("https://hub.example.com/twinsync/")) == (
        "https://hub.example.com:443/twinsync"
    )
    assert str(BaseUrl.parse("http://[::1]:81")) == "http://[::1]:81"
    for bad in (
        "localhost:8080",
        "ftp://x",
        "http://",
        "http://h:99999",
        "http://u:p@h/",
        "http://h/?q",
    ):
        with pytest.raises(ClientConfigError):
            BaseUrl.parse(bad)


def test_a_webhook_event_verifies_only_as_the_hub_signed_it_and_while_fresh() -> None:
    """The hub's own signing (cloud_hub.privacy.sign) verifies; another secret, an
    altered body, a stale or future time, or a malformed header do not."""
    body = b'{"event": "erasure", "event_id": "e1"}'
    now = 1_800_000_000
    header = sign("s3cret", body, now)
    assert verify_webhook("s3cret", body, header, now_s=now + 10)
    assert not verify_webhook("other", body, header, now_s=now)
    assert not verify_webhook("s3cret", body + b" ", header, now_s=now)
    assert not verify_webhook("s3cret", body, header, now_s=now + 301)
    assert not verify_webhook("s3cret", body, header, now_s=now - 301)
    assert verify_webhook("s3cret", body, header, now_s=now + 3000, tolerance_s=3600)
    for bad in ("", "t=1", "v1=ab", "t=x,v1=ab", f"t=１{now},v1=ab", "garbage"):
        assert not verify_webhook("s3cret", body, bad, now_s=now)
