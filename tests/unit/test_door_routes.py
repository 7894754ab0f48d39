"""The door admits exactly the routes that run the model, as the app registers them."""

from __future__ import annotations

from fastapi.routing import APIRoute

from app.edge.application import INFERENCE_ROUTERS
from tests.conftest import demo_app


def test_the_door_matches_every_inference_route_and_no_other() -> None:
    with demo_app() as app:
        pass
    matcher = app.state.inference_route
    inference = {route.path for router in INFERENCE_ROUTERS for route in router.routes}
    assert {"/predict", "/explain", "/v2/models/{name}/infer"} <= inference
    for route in app.routes:
        if isinstance(route, APIRoute):
            concrete = route.path.replace("{name}", "demo").replace("{version}", "1")
            expected = route.path if route.path in inference else None
            assert matcher(concrete) == expected, route.path
    # A path the app would not route is no inference route, however it starts and ends.
    assert matcher("/v2/models/a/b/infer") is None
