"""The Open Inference Protocol over gRPC: KServe v2's ``inference.GRPCInferenceService`` (with
Triton's ``ModelConfig`` and ``ModelStatistics``) and ``grpc.health.v1``, on their own port.

A thin adapter, like the HTTP routes: the same inference service, admission, limits, deadlines, API
keys, metrics and drain; the messages are converted to and from ``app.edge.open_inference``.
"""
