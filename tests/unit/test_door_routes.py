"""The door admits exactly the routes that run the model, as the app registers them."""

from __future__ import annotations

from fastapi.routing import APIRoute

from app.edge.application import INFERENCE_ROUTERS, create_app
from app.settings import Settings
from tests.conftest import DEMO_BUNDLE


def test_the_door_matches_every_inference_route_and_no_other() -> None:
    app = create_app(Settings(model_dir=DEMO_BUNDLE))
    matcher = app.state.inference_route
    inference = {route.path for router in INFERENCE_ROUTERS for route in router.routes}
    assert {"/predict", "/explain", "/v2/models/{name}/infer"} <= inference
    for route in app.routes:
        if isinstance(route, APIRoute):
            concrete = route.path.replace("{name}", "demo").replace("{version}", "1")
            expected = route.path if route.path in inference else None
            assert matcher(concrete.encode()) == expected, route.path
    # A path the app would not route is no inference route, however it starts and ends.
    assert matcher(b"/v2/models/a/b/infer") is None
