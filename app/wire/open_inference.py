"""The JSON bodies of the Open Inference Protocol routes (/v2), declared once: the server parses
requests and emits answers with them, and /docs and generated clients see them.

One part is read by hand (``app.edge.open_inference.codec``): an infer input's ``data``, millions of
numbers in a body within the size limit, read in pieces once its declared shape has passed the
limits, and the bytes after the JSON header of the binary tensor extension. Each body carries an
example with the bundled demo model's values.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel, SkipValidation, StrictInt

# A 40 x 40 WEBP of a demo star, which the demo model answers "star" (0.995926): the request
# example works as it is in /docs' "Try it out".
STAR_WEBP = (
    "UklGRtQAAABXRUJQVlA4IMgAAACQBQCdASooACgAPtFcp02oJSOiLjgIAQAaCWQAwOgTwEG5Zeqo2or6"
    "FHzTMZR/uuDryS5gAAD+E6rPy7gRRG+duFEWH+Vv+4PtVpvgwf/49teOcexwzXJ+IYM84Xu7n8SMDqEP"
    "iPh9Bhvb1zFcnWnwDB2WmAJ17t/n/pQ/H61t+SeomXOLhF3yMeK1FJa0Kf/dJQi0naKsSBT8Tfv4gCCu"
    "i7d8naaKOqmS/p/t3+z1A/5PuJOS2kva4GpBlMEMo/dDkl6TbQAAAA=="
)


class V2Error(BaseModel):
    """Every error under /v2: the protocol's clients read ``error`` and nothing else."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"error": "unknown model resnet50; this server serves demo"}]
        }
    )

    error: str


class ServerMetadata(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "resnet-serve",
                    "version": "0.1.0",
                    "extensions": [
                        "classification",
                        "binary_tensor_data",
                        "model_configuration",
                        "statistics",
                        "model_repository",
                    ],
                }
            ]
        }
    )

    name: str
    version: str
    extensions: list[str]


class TensorMetadata(BaseModel):
    name: str
    datatype: str = Field(description="One per tensor, as the protocol has it.")
    shape: list[int] = Field(description="-1: any size (the batch dimension).")


class ModelMetadata(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "demo",
                    "versions": ["1"],
                    "platform": "pytorch",
                    "inputs": [
                        {"name": "IMAGE", "datatype": "BYTES", "shape": [-1, 1]},
                        {"name": "PIXELS", "datatype": "UINT8", "shape": [-1, 3, 112, 112]},
                    ],
                    "outputs": [
                        {"name": "PROBABILITIES", "datatype": "FP32", "shape": [-1, 8]},
                        {"name": "ABSTAINED", "datatype": "BOOL", "shape": [-1, 1]},
                    ],
                }
            ]
        }
    )

    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class TritonTensorConfig(BaseModel):
    name: str
    data_type: str = Field(description="Triton's TYPE_ name: TYPE_STRING is the protocol's BYTES.")
    dims: list[int] = Field(
        min_length=1, description="Shape of one batch element (no batch dimension), never empty."
    )


class TritonInputConfig(TritonTensorConfig):
    optional: bool = Field(
        description="True for each of the alternative inputs: a request carries exactly one."
    )


class TritonModelConfig(BaseModel):
    """The part of Triton's model configuration its clients read; the rest is Triton's own."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "demo",
                    "platform": "pytorch",
                    "max_batch_size": 32,
                    "input": [
                        {
                            "name": "IMAGE",
                            "data_type": "TYPE_STRING",
                            "dims": [1],
                            "optional": True,
                        },
                        {
                            "name": "PIXELS",
                            "data_type": "TYPE_UINT8",
                            "dims": [3, 112, 112],
                            "optional": True,
                        },
                    ],
                    "output": [
                        {"name": "PROBABILITIES", "data_type": "TYPE_FP32", "dims": [8]},
                        {"name": "ABSTAINED", "data_type": "TYPE_BOOL", "dims": [1]},
                    ],
                }
            ]
        }
    )

    name: str
    platform: str
    max_batch_size: int = Field(description="Most images one request may carry.")
    input: list[TritonInputConfig]
    output: list[TritonTensorConfig]


class LiveResponse(BaseModel):
    """``GET /v2/health/live``: the status code says it; the body says it too, for KServe's SDK."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"live": True}]})

    live: bool


class ReadyResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"ready": True}]})

    ready: bool


class ModelReadyResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"name": "demo", "ready": True}]})

    name: str
    ready: bool


class RepositoryIndexRequest(BaseModel):
    """Triton's repository extension: ``ready`` true lists only the versions that serve."""

    ready: bool | None = None


class RepositoryModel(BaseModel):
    """One version in the repository index."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"name": "demo", "version": "2", "state": "READY", "reason": ""}]
        }
    )

    name: str
    version: str
    state: Literal["READY", "UNAVAILABLE"]
    reason: str = Field("", description="Why it does not serve: unloaded, refused (and why), ...")


class RepositoryIndex(RootModel[list[RepositoryModel]]):
    """Every version of the model, as Triton's repository index lists them."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                [
                    {"name": "demo", "version": "1", "state": "UNAVAILABLE", "reason": "older"},
                    {"name": "demo", "version": "2", "state": "READY", "reason": ""},
                ]
            ]
        }
    )


class StatisticDuration(BaseModel):
    count: int = Field(description="How many times.")
    ns: int = Field(description="Their cumulative duration in nanoseconds.")


class InferStatistics(BaseModel):
    success: StatisticDuration = Field(description="Requests answered, admission to answer.")
    fail: StatisticDuration = Field(description="Requests that failed after admission.")
    queue: StatisticDuration = Field(description="Waiting in the batcher's queue.")
    compute_input: StatisticDuration = Field(description="Decoding and preprocessing the images.")
    compute_infer: StatisticDuration = Field(description="The forward pass of the batch.")
    compute_output: StatisticDuration = Field(description="Building the answer from the outputs.")
    cache_hit: StatisticDuration = Field(description="Always zero: no response cache.")
    cache_miss: StatisticDuration = Field(description="Always zero: no response cache.")


class InferBatchStatistics(BaseModel):
    batch_size: int
    compute_input: StatisticDuration
    compute_infer: StatisticDuration = Field(description="Forward passes of this size.")
    compute_output: StatisticDuration


class ModelStatistics(BaseModel):
    name: str
    version: str
    last_inference: int = Field(description="Milliseconds since the epoch; 0: none yet.")
    inference_count: int = Field(description="Images classified.")
    execution_count: int = Field(description="Forward passes (batches) run.")
    inference_stats: InferStatistics
    batch_stats: list[InferBatchStatistics]


class ModelStatisticsResponse(BaseModel):
    """Triton's statistics extension: one entry per model and version."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model_stats": [
                        {
                            "name": "demo",
                            "version": "1",
                            "last_inference": 1796609418627,
                            "inference_count": 3,
                            "execution_count": 2,
                            "inference_stats": {
                                "success": {"count": 2, "ns": 31200000},
                                "fail": {"count": 0, "ns": 0},
                                "queue": {"count": 2, "ns": 130000},
                                "compute_input": {"count": 2, "ns": 9800000},
                                "compute_infer": {"count": 2, "ns": 20500000},
                                "compute_output": {"count": 2, "ns": 390000},
                                "cache_hit": {"count": 0, "ns": 0},
                                "cache_miss": {"count": 0, "ns": 0},
                            },
                            "batch_stats": [
                                {
                                    "batch_size": 1,
                                    "compute_input": {"count": 1, "ns": 0},
                                    "compute_infer": {"count": 1, "ns": 10200000},
                                    "compute_output": {"count": 1, "ns": 0},
                                },
                                {
                                    "batch_size": 2,
                                    "compute_input": {"count": 1, "ns": 0},
                                    "compute_infer": {"count": 1, "ns": 10300000},
                                    "compute_output": {"count": 1, "ns": 0},
                                },
                            ],
                        }
                    ]
                }
            ]
        }
    )

    model_stats: list[ModelStatistics]


class V2InputParameters(BaseModel):
    binary_data_size: StrictInt | None = Field(
        None,
        ge=0,
        description="Bytes of this tensor after the JSON header (binary tensor extension); "
        "absent: the tensor is in `data`.",
    )


class V2InferInput(BaseModel):
    name: Literal["IMAGE", "PIXELS"]
    shape: list[Annotated[StrictInt, Field(ge=0)]] = Field(
        description="IMAGE: [N] or [N, 1]; PIXELS: [N, 3, S, S] at the model's input size S."
    )
    datatype: Literal["BYTES", "UINT8", "FP32"] = Field(
        description="IMAGE: BYTES; PIXELS: UINT8 or FP32, RGB values 0..255."
    )
    # Not validated here: the codec reads it once the shape has passed the limits, numbers in
    # pieces (``app.edge.open_inference.json_numbers``), strings as base64. Nested or flat, as the protocol has it.
    data: SkipValidation[list[str] | list[float] | None] = Field(
        None,
        description="IMAGE: N base64 strings of encoded images (JPEG, PNG, ...); PIXELS: the "
        "values in row-major order. Absent with `binary_data_size`.",
    )
    parameters: V2InputParameters | None = None


class V2OutputRequestParameters(BaseModel):
    classification: StrictInt | None = Field(
        None,
        ge=1,
        description="PROBABILITIES only: the top k as BYTES `score:index:label` strings "
        "(the classification extension).",
    )
    binary_data: bool | None = Field(
        None, description="Answer this output as bytes after the JSON header (binary extension)."
    )


class V2OutputRequest(BaseModel):
    name: Literal["PROBABILITIES", "ABSTAINED"]
    parameters: V2OutputRequestParameters | None = None


class V2RequestParameters(BaseModel):
    binary_data_output: bool | None = Field(
        None, description="Default of every output's `binary_data`."
    )


class V2InferRequest(BaseModel):
    """The JSON body of an infer request, or the JSON header of a binary one."""

    # Validated from the structure that app.edge.open_inference.json_numbers reads, its inputs' data unread.

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "request-1",
                    "inputs": [
                        {"name": "IMAGE", "shape": [1], "datatype": "BYTES", "data": [STAR_WEBP]}
                    ],
                    "outputs": [
                        {"name": "PROBABILITIES", "parameters": {"classification": 3}},
                        {"name": "ABSTAINED"},
                    ],
                }
            ]
        }
    )

    id: str | None = Field(None, description="Echoed in the response.")
    inputs: list[V2InferInput] = Field(
        min_length=1, max_length=1, description="Exactly one: IMAGE or PIXELS."
    )
    outputs: list[V2OutputRequest] | None = Field(
        None, description="Each at most once; none named: all of them, in this order."
    )
    parameters: V2RequestParameters | None = None


class V2OutputParameters(BaseModel):
    binary_data_size: int = Field(description="Bytes of this output after the JSON header.")


class V2OutputTensor(BaseModel):
    name: Literal["PROBABILITIES", "ABSTAINED"]
    datatype: Literal["FP32", "BYTES", "BOOL"] = Field(
        description="PROBABILITIES: FP32 [N, classes], or BYTES [N, k] with classification; "
        "ABSTAINED: BOOL [N, 1]."
    )
    shape: list[int]
    data: list[float] | list[str] | list[bool] | None = Field(
        None, description="The values in row-major order; absent when sent as binary data."
    )
    parameters: V2OutputParameters | None = None


class V2InferResponse(BaseModel):
    """The JSON body of an infer response, or the JSON header of a binary one."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model_name": "demo",
                    "model_version": "1",
                    "id": "request-1",
                    "outputs": [
                        {
                            "name": "PROBABILITIES",
                            "datatype": "BYTES",
                            "shape": [1, 3],
                            "data": [
                                "0.995926:6:star",
                                "0.002751:2:clutter",
                                "0.000391:0:checkerboard",
                            ],
                        },
                        {"name": "ABSTAINED", "datatype": "BOOL", "shape": [1, 1], "data": [False]},
                    ],
                }
            ]
        }
    )

    model_name: str
    model_version: str
    id: str | None = Field(None, description="The request's, when it had one.")
    outputs: list[V2OutputTensor]


def inline_json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON schema with its nested models written out in place.

    For a body documented through ``openapi_extra`` (its route reads the body itself): FastAPI
    puts only the models it uses in ``components``, so a ``$ref`` into ``$defs`` would
    point nowhere in /openapi.json.
    """
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, list):
            return [resolve(item) for item in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:  # the field's own keys (a description) win over the model's
            target = definitions[node["$ref"].rsplit("/", 1)[-1]]
            node = target | {key: value for key, value in node.items() if key != "$ref"}
        return {key: resolve(value) for key, value in node.items()}

    return resolve(schema)
