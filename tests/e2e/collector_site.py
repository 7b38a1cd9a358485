"""A website and a collector on loopback for the browser tests: the collector under uvicorn
in a thread (its clock set by the test) and a page server with the snippet installed."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import uvicorn
from sqlalchemy import Engine

from revsync.collect.server import Collector
from revsync.config.mapping import RevsyncConfig

UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
PAGE = """<!doctype html><html><head><title>Pricing</title>
<script>window.dataLayer = window.dataLayer || []; function gtag(){{dataLayer.push(arguments);}}
{consent}
window.revsync = window.revsync || function () {{ (revsync.q = revsync.q || []).push(arguments); }};
</script>
<script async src="http://localhost:{collector}/v1/revsync.js?site={site}"></script>
</head><body><form method="post" action="/thanks">
<input type="email" name="email"><input type="tel" name="phone"><button>Send</button>
</form></body></html>"""
GRANTED = (
    "gtag('consent', 'default', {ad_user_data: 'granted', ad_personalization: 'granted', "
    "ad_storage: 'granted', analytics_storage: 'granted'});"
)
DENIED = "gtag('consent', 'default', {analytics_storage: 'denied', ad_storage: 'denied'});"
SITES = {"/": ("site-main-01", GRANTED), "/strict": ("site-strict-1", ""),
         "/denied": ("site-main-01", DENIED)}  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Site:
    page: str  # http://localhost:PORT
    collector: str
    clock: Clock
    engine: Engine


def _page_server(collector_port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def _page(self) -> None:
            site, consent = SITES.get(self.path.split("?")[0], SITES["/"])
            body = PAGE.format(consent=consent, collector=collector_port, site=site).encode()
            self.send_response(200)
            self.send_header("content-type", "text/html; charset=utf-8")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self._page()

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            self._page()

        def log_message(self, *args: Any) -> None:
            pass

    return ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)


@contextmanager
def running_site(engine: Engine, now: datetime) -> Iterator[Site]:
    """The collector (cookie domain ``localhost``, form capture on) and the page server."""
    collector_port = pages = None
    collector_port = free_port()
    pages = _page_server(collector_port)
    page_origin = f"http://localhost:{pages.server_address[1]}"
    mapping = RevsyncConfig.model_validate({
        "sources": [],
        "collector": {"flush_ms": 5, "sites": [
            {"key": "site-main-01", "origins": [page_origin], "forms": True,
             "cookie_domain": "localhost"},
            {"key": "site-strict-1", "origins": [page_origin], "consent": "required"},
        ]},
    })  # fmt: skip
    clock = Clock(now)
    collector = Collector(mapping, engine, clock=clock)
    server = uvicorn.Server(
        uvicorn.Config(collector.app, host="127.0.0.1", port=collector_port, log_level="warning")
    )
    threads = [threading.Thread(target=server.run), threading.Thread(target=pages.serve_forever)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield Site(page_origin, f"http://localhost:{collector_port}", clock, engine)
    finally:
        server.should_exit = True
        pages.shutdown()
        for thread in threads:
            thread.join(10)
        pages.server_close()
