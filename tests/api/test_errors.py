"""Bad input gets one clear JSON error and the server stays up."""

from __future__ import annotations

import httpx
import pytest
from PIL import Image

from tests.conftest import ServerProcess, encode, known_image, png_claiming


def _assert_error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return body["error"]["message"]


def _post(server: ServerProcess, **kwargs) -> httpx.Response:
    return httpx.post(server.url + "/predict", timeout=30, **kwargs)


JPEG = encode(known_image("circle", 0))


def test_not_an_image_is_400_naming_the_part(demo_server: ServerProcess) -> None:
    files = [
        ("files", ("ok.jpg", JPEG, "image/jpeg")),
        ("files", ("notes.txt", b"hello", "text/plain")),
    ]
    message = _assert_error(_post(demo_server, files=files), 400, "invalid_image")
    assert "files[1] (notes.txt)" in message


def test_truncated_jpeg_is_400(demo_server: ServerProcess) -> None:
    response = _post(
        demo_server, content=JPEG[: len(JPEG) // 2], headers={"Content-Type": "image/jpeg"}
    )
    assert "truncated" in _assert_error(response, 400, "invalid_image")


def test_corrupt_png_is_400(demo_server: ServerProcess) -> None:
    png = bytearray(encode(known_image("square", 0), "PNG"))
    png[60:80] = b"\x00" * 20
    response = _post(demo_server, content=bytes(png), headers={"Content-Type": "image/png"})
    _assert_error(response, 400, "invalid_image")


def test_unsupported_media_type_is_415(demo_server: ServerProcess) -> None:
    response = _post(demo_server, json={"image": "base64..."})
    _assert_error(response, 415, "unsupported_media_type")


def test_empty_body_is_400(demo_server: ServerProcess) -> None:
    response = _post(demo_server, content=b"", headers={"Content-Type": "image/jpeg"})
    _assert_error(response, 400, "empty_body")


def test_multipart_without_file_is_400(demo_server: ServerProcess) -> None:
    response = _post(demo_server, data={"comment": "no image here"}, files={"other": ("a", b"x")})
    _assert_error(response, 400, "no_file")


def test_body_over_the_limit_is_413(start_server) -> None:
    server = start_server(max_body_bytes=64 * 1024, max_batch_size=1).wait_ready()
    big = b"\xff\xd8" + b"\x00" * (200 * 1024)
    _assert_error(
        _post(server, content=big, headers={"Content-Type": "image/jpeg"}), 413, "payload_too_large"
    )
    files = {"file": ("big.jpg", big, "image/jpeg")}
    _assert_error(_post(server, files=files), 413, "payload_too_large")

    def chunks():  # no Content-Length: the limit must hold on the stream itself
        for _ in range(50):
            yield b"\x00" * 8192

    response = _post(server, content=chunks(), headers={"Content-Type": "image/jpeg"})
    _assert_error(response, 413, "payload_too_large")
    assert server.get("/health/ready").status_code == 200


def test_decompression_bomb_is_413(start_server) -> None:
    server = start_server(max_image_pixels=1_000_000, max_batch_size=1).wait_ready()
    bomb = encode(Image.new("L", (4000, 4000)), "PNG")  # 16 MP of zeros compress to a few KB
    message = _assert_error(
        _post(server, content=bomb, headers={"Content-Type": "image/png"}), 413, "image_too_large"
    )
    assert "4000x4000" in message


def test_a_pixel_limit_above_pillows_own_ceiling_is_the_one_that_holds(start_server) -> None:
    # Pillow refuses over 2 x 89.5 MP of its own accord; the service's limit replaces it.
    server = start_server(
        max_image_pixels=200_000_000, max_request_pixels=200_000_000, max_batch_size=1
    ).wait_ready()
    big = png_claiming(14_000, 14_000)  # 196 MP: admitted, then found to hold no pixels
    _assert_error(
        _post(server, content=big, headers={"Content-Type": "image/png"}), 400, "invalid_image"
    )
    over = png_claiming(15_000, 15_000)  # 225 MP
    message = _assert_error(
        _post(server, content=over, headers={"Content-Type": "image/png"}), 413, "image_too_large"
    )
    assert message.endswith("the limit is 200000000")


def test_too_many_images_is_413(demo_server: ServerProcess) -> None:
    files = [("files", (f"{i}.jpg", JPEG, "image/jpeg")) for i in range(65)]
    _assert_error(_post(demo_server, files=files), 413, "too_many_images")


@pytest.mark.parametrize("top_k", ["0", "10", "-1", "five"])  # the demo has 9 classes
def test_bad_top_k_is_422(demo_server: ServerProcess, top_k: str) -> None:
    response = _post(
        demo_server, params={"top_k": top_k}, content=JPEG, headers={"Content-Type": "image/jpeg"}
    )
    _assert_error(response, 422, "invalid_parameter")


def test_unknown_route_and_method_use_the_error_shape(demo_server: ServerProcess) -> None:
    _assert_error(demo_server.get("/nope"), 404, "not_found")
    _assert_error(demo_server.get("/predict"), 405, "method_not_allowed")


def test_server_survives_a_burst_of_garbage(demo_server: ServerProcess) -> None:
    garbage = [
        b"",
        b"\x89PNG\r\n\x1a\n",
        b"GIF89a" + b"\x00" * 10,
        b"\xff\xd8\xff",
        b"RIFF0000WEBP",
        b"BM" + b"\x01" * 40,
    ]
    for data in garbage:
        assert (
            _post(demo_server, content=data, headers={"Content-Type": "image/jpeg"}).status_code
            == 400
        )
    assert demo_server.get("/health/ready").status_code == 200
    response = _post(demo_server, content=JPEG, headers={"Content-Type": "image/jpeg"})
    assert response.status_code == 200


def test_text_field_named_file_is_400_with_a_hint(demo_server: ServerProcess) -> None:
    response = _post(demo_server, data={"file": "not a file"}, files={"other": ("a", b"x")})
    message = _assert_error(response, 400, "no_file")
    assert "curl -F file=@photo.jpg" in message


def test_extreme_aspect_ratio_is_classified_without_blowing_up(demo_server: ServerProcess) -> None:
    sliver = encode(Image.new("L", (1, 30000)), "PNG")  # 138 bytes; naive resizing makes 3 GB
    response = _post(demo_server, content=sliver, headers={"Content-Type": "image/png"})
    assert response.status_code == 200, response.text
