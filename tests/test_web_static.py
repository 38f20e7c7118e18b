"""The built front end's files: compressed for browsers that accept gzip, cached as immutable,
never outside the assets folder."""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx
from starlette.applications import Starlette

from consilium.web_static import accepts_gzip, viewer_routes


def get_all(dist: Path, requests: list[tuple[str, dict[str, str]]]) -> list[httpx.Response]:
    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=Starlette(routes=viewer_routes(dist)))
        async with httpx.AsyncClient(transport=transport, base_url="http://viewer") as client:
            return [await client.get(path, headers=headers) for path, headers in requests]
    return anyio.run(run)


def test_assets_are_gzipped_when_accepted(tmp_path: Path) -> None:
    assets = tmp_path / "dist" / "assets"
    assets.mkdir(parents=True)
    script = ("export const answer = 42;\n" * 4000).encode()
    (assets / "index-abc.js").write_bytes(script)
    (assets / "photo-abc.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    (tmp_path / "secret.txt").write_text("no")
    plain, zipped, again, png, escape = get_all(tmp_path / "dist", [
        ("/viewer/assets/index-abc.js", {"Accept-Encoding": "identity"}),
        ("/viewer/assets/index-abc.js", {"Accept-Encoding": "gzip, deflate, br"}),
        ("/viewer/assets/index-abc.js", {"Accept-Encoding": "br;q=1, gzip;q=0.5"}),
        ("/viewer/assets/photo-abc.png", {"Accept-Encoding": "gzip"}),
        ("/viewer/assets/..%2F..%2Fsecret.txt", {}),
    ])
    assert plain.status_code == 200 and plain.content == script
    assert "content-encoding" not in plain.headers
    # httpx decodes Content-Encoding: the body is the script, the wire size far smaller
    assert zipped.headers["content-encoding"] == "gzip" and zipped.content == script
    assert int(zipped.headers["content-length"]) < len(script) // 20
    assert zipped.headers["content-type"].startswith("text/javascript")
    assert "immutable" in zipped.headers["cache-control"]
    assert zipped.headers["vary"] == "Accept-Encoding"
    assert again.headers["content-encoding"] == "gzip" and again.content == script
    assert "content-encoding" not in png.headers  # already compressed formats go as they are
    assert escape.status_code == 404


def test_accept_encoding_parsing() -> None:
    assert accepts_gzip("gzip")
    assert accepts_gzip("deflate, gzip;q=0.8")
    assert accepts_gzip("*")
    assert not accepts_gzip("gzip;q=0")
    assert not accepts_gzip("br, deflate")
    assert not accepts_gzip(None)
