"""What clients send cannot forge lines in, repaint or leak into the server's log (raw bytes)."""

from __future__ import annotations

import io
import json
import socket

import httpx
from PIL import Image

from tests.conftest import ServerProcess, encode, known_image, png_claiming

# Request targets as they go on the wire; uvicorn percent-decodes them into the path that is logged.
HOSTILE_TARGETS = {
    "crlf": "/predict%0d%0a2026-01-01%2000:00:00,000%20INFO%20resnet_serve.access:%20forged",
    "ansi": "/%1b[31mred%1b[0m",
    "line-separator": "/a%e2%80%a8b",
    "next-line": "/a%c2%85b",
}


def _raw_get(server: ServerProcess, target: str, request_id: str) -> bytes:
    """Send a request line byte for byte (an HTTP client would re-encode the target)."""
    request = (
        f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-ID: {request_id}\r\n"
        "Connection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request.encode("ascii"))
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    return response


def _send_hostile_targets(server: ServerProcess) -> None:
    for name, target in HOSTILE_TARGETS.items():
        assert _raw_get(server, target, f"hostile-{name}").startswith(b"HTTP/1.1 4")
    server.terminate()  # every access line is written once the process has exited


def test_text_log_shows_control_characters_in_paths_as_escapes(start_server) -> None:
    server = start_server(LOG_FORMAT="text", MAX_BATCH_SIZE=2).wait_ready()
    _send_hostile_targets(server)
    log = server.logs()
    for raw in ("\r", "\x1b", "\u2028", "\x85"):
        assert raw not in log
    lines = log.split("\n")
    assert not [line for line in lines if line.startswith("2026-01-01")]
    access = {
        name: [line for line in lines if line.endswith(f"id=hostile-{name}")]
        for name in HOSTILE_TARGETS
    }
    assert (
        r"GET /predict\r\n2026-01-01 00:00:00,000 INFO resnet_serve.access: forged 404"
        in access["crlf"][0]
    )
    assert r"GET /\x1b[31mred\x1b[0m 404" in access["ansi"][0]
    assert r"GET /a\u2028b 404" in access["line-separator"][0]
    assert r"GET /a\x85b 404" in access["next-line"][0]


def test_json_log_keeps_one_object_per_line_for_hostile_paths(start_server) -> None:
    server = start_server(LOG_FORMAT="json", MAX_BATCH_SIZE=2).wait_ready()
    _send_hostile_targets(server)
    lines = [line for line in server.logs().split("\n") if line]
    records = [json.loads(line) for line in lines]  # every line is one whole object
    by_id = {record.get("request_id"): record for record in records}
    assert by_id["hostile-crlf"]["message"].startswith(
        "GET /predict\r\n2026-01-01 00:00:00,000 INFO resnet_serve.access: forged "
    )
    assert by_id["hostile-ansi"]["message"].startswith("GET /\x1b[31mred\x1b[0m 404 ")
    assert by_id["hostile-line-separator"]["message"].startswith("GET /a\u2028b 404 ")
    assert by_id["hostile-next-line"]["message"].startswith("GET /a\x85b 404 ")


def test_bearer_token_and_image_bytes_never_reach_the_log(start_server) -> None:
    server = start_server(
        LOG_FORMAT="text", LOG_LEVEL="debug", API_KEYS="secret123", MAX_BATCH_SIZE=2
    ).wait_ready()
    image = encode(known_image("ring", 3))
    for key, body, request_id in [
        ("secret123", image, "auth-ok"),
        ("wrong-secret456", image, "auth-wrong"),
        ("secret123", b"not an image: body-marker-7f3a", "auth-bad-body"),
    ]:
        httpx.post(
            server.url + "/predict",
            content=body,
            headers={
                "Authorization": f"Bearer {key}",
                "Content-Type": "image/jpeg",
                "X-Request-ID": request_id,
            },
            timeout=30,
        )
    server.terminate()
    log = server.logs()
    for request_id in ("auth-ok", "auth-wrong", "auth-bad-body"):
        assert [
            line
            for line in log.split("\n")
            if "POST /predict" in line and f"id={request_id}" in line
        ]
    assert "secret123" not in log and "secret456" not in log
    assert "body-marker-7f3a" not in log


def _corrupt_deflate_tiff() -> bytes:
    """A TIFF whose compressed strips are damaged: libtiff itself complains of those."""
    buffer = io.BytesIO()
    Image.radial_gradient("L").resize((300, 300)).save(
        buffer, "TIFF", compression="tiff_adobe_deflate"
    )
    data = bytearray(buffer.getvalue())
    for index in range(200, 2000, 7):
        data[index] ^= 0x5A
    return bytes(data)


def test_images_pillow_and_libtiff_would_complain_of_leave_only_json_lines(start_server) -> None:
    server = start_server(LOG_FORMAT="json", MAX_BATCH_SIZE=2).wait_ready()
    # 100 MP: over Pillow's ceiling (89 MP), where it would only warn, under twice it.
    for body, status in ((png_claiming(10_000, 10_000), 413), (_corrupt_deflate_tiff(), 400)):
        response = httpx.post(server.url + "/predict", files={"file": ("x", body)}, timeout=30)
        assert response.status_code == status, response.text
    server.terminate()
    lines = [line for line in server.logs().split("\n") if line]
    assert [json.loads(line)["level"] for line in lines]  # every line is one whole object
    assert "Decoding error" not in server.logs() and "DecompressionBomb" not in server.logs()
