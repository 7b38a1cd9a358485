"""The browser snippet: ``revsync.js`` with its comments and indentation stripped, and the
site's settings written in, one cacheable body (with its ETag) per site."""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass
from functools import cache
from importlib.resources import files

from revsync.config.collector import CollectorConfig, CollectorSite


@cache
def minified() -> str:
    """The snippet source without full-line comments, indentation or blank lines."""
    source = files("revsync.collect").joinpath("revsync.js").read_text(encoding="utf-8")
    lines = (line.strip() for line in source.splitlines())
    return "\n".join(line for line in lines if line and not line.startswith("//")) + "\n"


@dataclass(frozen=True)
class Snippet:
    body: bytes
    etag: str


def render(config: CollectorConfig, site: CollectorSite) -> Snippet:
    settings = {
        "s": site.key,
        "r": int(site.consent == "required"),
        "f": int(site.forms),
        "n": config.cookie_name,
        "m": config.session_minutes,
        "c": int(site.cookie_domain is not None),
    }
    text = minified().replace("__CONFIG__", json.dumps(settings, separators=(",", ":")))
    body = text.encode()
    return Snippet(body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')


def sizes() -> tuple[int, int]:
    """Minified and gzipped size in bytes of the snippet with a typical site's settings."""
    body = render(
        CollectorConfig(sites=[CollectorSite(key="site-key-0001", origins=["https://a.example"])]),
        CollectorSite(key="site-key-0001", origins=["https://a.example"]),
    ).body
    return len(body), len(gzip.compress(body, 9))
