"""The Open Inference Protocol apart from any transport: body codec, model description, statistics.

The HTTP routes (``app.edge.routes.v2``) and the gRPC servicer (``app.edge.grpc``) are thin adapters
over these modules and the one inference service."""
