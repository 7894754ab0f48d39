"""Every serving setting, in one pydantic-settings class read from ``RESNET_SERVE_*`` variables.

The object is built once (by the CLI or by ``app.edge.application``) and passed down as a value: nothing reads the
environment anywhere else, so tests can start apps with different settings side by side.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "demo"


class Settings(BaseSettings):
    """Serving configuration; see the settings table in README.md."""

    model_config = SettingsConfigDict(env_prefix="RESNET_SERVE_", extra="ignore", frozen=True)

    host: str = Field("127.0.0.1", description="Interface to bind; 0.0.0.0 in containers.")
    port: int = Field(8000, ge=1, le=65535, description="TCP port.")
    grpc_port: int = Field(
        8001,
        ge=0,
        le=65535,
        description="gRPC port (KServe v2 GRPCInferenceService, grpc.health.v1) on the same host; "
        "0: no gRPC.",
    )
    model_dir: Path = Field(
        DEFAULT_MODEL_DIR,
        description="Bundle folder to serve, or a folder of numbered versions (1/, 2/, ...) each a "
        "bundle: the highest is served, or those its config.json's version policy selects.",
    )
    model_repository: Path | None = Field(
        None,
        description="A folder of model folders (each a bundle, or numbered versions with an "
        "optional config.json), each served under its folder's name; replaces model_dir.",
    )
    storage_uri: str | None = Field(
        None,
        # KServe sets STORAGE_URI on a container whose models come from storage, and mounts them.
        validation_alias=AliasChoices("RESNET_SERVE_STORAGE_URI", "STORAGE_URI"),
        description="KServe's STORAGE_URI: when set, the models KServe mounts at /mnt/models are "
        "served (a model folder as model_dir, a folder of them as model_repository), unless "
        "model_repository is set.",
    )
    model_poll_s: float = Field(
        0,
        ge=0,
        description="Seconds between looks for new versions (and, in a repository, new models), "
        "which are loaded, warmed up and swapped in without a failed request; 0: never.",
    )
    model_memory_mb: int = Field(
        0,
        ge=0,
        description="Most MB of weights the served model versions together may hold; a version "
        "that would pass it is refused while the others serve. 0: no limit.",
    )
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N.")
    precision: Literal["auto", "fp32", "fp16", "bf16"] = Field(
        "auto",
        description="Inference dtype; auto is bf16 on CUDA (fp16 where unsupported), fp32 on CPU.",
    )
    cuda_graphs: bool = Field(
        True,
        description="On CUDA, pad batches to power-of-two sizes and replay captured CUDA graphs.",
    )
    batches_in_flight: int = Field(
        2, ge=1, le=4, description="On CUDA, batches prepared while one runs; always 1 on CPU."
    )
    torch_threads: int = Field(
        0,
        ge=0,
        le=256,
        description="Intra-op threads for the forward pass; 0 keeps torch's default.",
    )
    gpu_decode: bool = Field(
        False, description="On CUDA, decode JPEGs with nvJPEG in batches; Pillow for the rest."
    )
    gpu_decode_max_pixels: int = Field(
        16_000_000,
        ge=1,
        le=64_000_000,
        description="With gpu_decode, larger JPEGs go to Pillow, whose draft mode decodes them "
        "at a fraction of their size (nvJPEG decodes at full size, in GPU memory).",
    )
    jpeg_draft: bool = Field(
        True, description="Decode JPEGs at the smallest DCT scale that still covers the resize."
    )
    abstain_threshold: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Answer abstained: true below this top score; unset: the bundle's, 0: never.",
    )
    abstain_labels: str | None = Field(
        None,
        description="Comma-separated labels answered abstained: true whatever their score "
        "(a trained background or clutter class); unset: the bundle's, empty: none.",
    )
    max_batch_size: int = Field(32, ge=1, le=1024, description="Most images in one forward pass.")
    max_batch_delay_ms: float = Field(
        0.0, ge=0, le=1000, description="Extra wait for a fuller batch; 0 runs at once when idle."
    )
    max_queue_size: int = Field(
        512,
        ge=1,
        description="Most images admitted and unanswered (uploading, decoding, queued, running); "
        "beyond it 503 at once.",
    )
    max_requests_in_flight: int = Field(
        256, ge=1, description="Most inference requests admitted at once; beyond it 503 at once."
    )
    request_timeout_s: float = Field(
        30.0, gt=0, description="Per-request deadline from arrival, upload included; then 504."
    )
    upload_timeout_s: float = Field(
        10.0, gt=0, description="Time a client has to send the whole request body; then 408."
    )
    header_timeout_s: float = Field(
        5.0, gt=0, description="Time a client has to send the request line and headers; then 408."
    )
    keep_alive_timeout_s: float = Field(
        5.0, gt=0, description="How long an idle keep-alive connection stays open."
    )
    write_timeout_s: float = Field(
        30.0,
        gt=0,
        description="Time a response may go without any of it being taken by the client; then "
        "the connection is closed (a client that stopped reading).",
    )
    max_header_bytes: int = Field(
        32768, ge=1024, description="Largest request line plus headers; beyond it 431."
    )
    max_header_count: int = Field(100, ge=8, description="Most request headers; beyond it 431.")
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024, description="Largest request body.")
    max_body_bytes_in_flight: int = Field(
        256 * 1024 * 1024,
        ge=1024,
        description="Body bytes of all admitted inference requests (Content-Length, else "
        "MAX_BODY_BYTES each); beyond it 503 at once.",
    )
    max_image_pixels: int = Field(
        40_000_000, ge=1024, description="Largest decoded image (width x height)."
    )
    max_images_per_request: int = Field(64, ge=1, description="Most images in one request.")
    max_request_pixels: int = Field(
        120_000_000,
        ge=1024,
        description="Decode budget of one request: its images' pixels to decode; beyond it 413.",
    )
    max_decode_pixels: int = Field(
        400_000_000,
        ge=1024,
        description="Decode budget of the whole server: pixels admitted for decoding; beyond it 503.",
    )
    workers: int = Field(
        1,
        ge=1,
        le=64,
        description="Replicas of the whole service sharing the port (one model each).",
    )
    decode_workers: int = Field(
        0,
        ge=0,
        le=64,
        description="Threads that decode and preprocess; 0: 1 on CPU, one per core (up to 8) on CUDA.",
    )
    explain_max_pending: int = Field(
        3,
        ge=1,
        le=64,
        description="Most /explain requests in progress at once, from arrival (one computes at a "
        "time, on its own thread); beyond it 503 explain_busy before the body is read.",
    )
    drain_timeout_s: float = Field(
        20.0, ge=0, description="On SIGTERM, how long queued work may take to finish."
    )
    api_keys: SecretStr = Field(
        SecretStr(""),
        description="Comma-separated bearer keys for inference routes; empty: no key needed.",
    )
    api_keys_file: Path | None = Field(
        None, description="File with one bearer key per line (a mounted secret), added to api_keys."
    )
    cors_origins: str = Field(
        "", description="Comma-separated origins allowed by CORS; empty: CORS off."
    )
    log_format: Literal["text", "json"] = Field("text", description="Access/log line format.")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Log level."
    )

    @property
    def abstain_label_names(self) -> frozenset[str] | None:
        """The labels set by ``abstain_labels``; None when it is unset (the bundle's apply)."""
        if self.abstain_labels is None:
            return None
        return frozenset(name.strip() for name in self.abstain_labels.split(",") if name.strip())

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", value):
            raise ValueError("device must be auto, cpu, cuda or cuda:N")
        return value

    @model_validator(mode="after")
    def _check_queue(self) -> Settings:
        if self.max_queue_size < max(self.max_batch_size, self.max_images_per_request):
            raise ValueError("max_queue_size must be >= max_batch_size and max_images_per_request")
        if self.max_body_bytes > self.max_body_bytes_in_flight:
            raise ValueError("max_body_bytes_in_flight must be >= max_body_bytes")
        if not self.max_image_pixels <= self.max_request_pixels <= self.max_decode_pixels:
            raise ValueError(
                "pixel limits must satisfy max_image_pixels <= max_request_pixels <= "
                "max_decode_pixels, so that one largest image always fits"
            )
        return self
