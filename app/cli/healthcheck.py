"""A readiness probe for container HEALTHCHECKs, written against the standard library only.

Docker runs the image's HEALTHCHECK inside the container every few seconds, so the probe must need
nothing the image lacks (no curl) and must stay cheap: it imports no torch, no FastAPI, no pydantic.
"""

from __future__ import annotations

import http.client
import sys
import urllib.error
import urllib.request

HEALTHY = 0
UNHEALTHY = 1


def probe(url: str, timeout_s: float = 2.0) -> int:
    """GET ``url``; 0 when it answers 200, 1 for any other status, a refused connection or a timeout.

    On failure one short line goes to stderr: Docker keeps the output of the last probes in
    ``docker inspect``, which is where an operator looks to learn why a container is unhealthy.
    """
    # No proxies: an HTTP_PROXY set for the whole container must not carry a loopback probe away.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout_s) as response:
            status = response.status
    except urllib.error.HTTPError as exc:  # a 4xx/5xx answer: the server is up but not ready
        exc.close()
        status = exc.code
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        # refused, reset, DNS, timeout, or something that is not HTTP on that port
        reason = getattr(exc, "reason", exc)
        print(f"unhealthy: {url}: {reason}", file=sys.stderr)
        return UNHEALTHY
    if status != 200:
        print(f"unhealthy: {url}: HTTP {status}", file=sys.stderr)
        return UNHEALTHY
    return HEALTHY
