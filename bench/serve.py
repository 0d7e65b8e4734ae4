"""Serve an ASGI app the way `intake web` serves ours, so baselines share its server settings.

Usage: python -m bench.serve MODULE:ATTR --port P [--workers N] [--factory]
"""

from __future__ import annotations

import argparse

import uvicorn


def uvicorn_options(host: str, port: int, workers: int) -> dict[str, object]:
    """The options service.cli.web passes to uvicorn.run (kept in step with it by hand)."""
    return {
        "host": host,
        "port": port,
        "workers": workers,
        "log_config": None,
        "access_log": False,
        "proxy_headers": False,
        "server_header": False,
        "timeout_graceful_shutdown": 15,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("app")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--factory", action="store_true")
    args = parser.parse_args()
    uvicorn.run(
        args.app,
        factory=args.factory,
        **uvicorn_options(args.host, args.port, args.workers),  # type: ignore[arg-type]
    )


if __name__ == "__main__":
    main()
