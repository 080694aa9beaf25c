"""The dashboard's files: served from memory with their types and a strict policy, no
other file reachable, revalidated with an ETag; the page public, its data not."""

from __future__ import annotations

import aiohttp
import yarl

from tests.request_path.conftest import MakeNode


async def test_the_page_and_its_files_and_nothing_else(
    make_node: MakeNode, http: aiohttp.ClientSession
) -> None:
    node = await make_node(providers=("openai",))
    assert node.gateway is not None
    url = node.gateway.url
    found = {}
    for path, kind in (("/dashboard", "text/html"), ("/dashboard/", "text/html"),
                       ("/dashboard/static/dashboard.js", "text/javascript"),
                       ("/dashboard/static/dashboard.css", "text/css"),
                       ("/dashboard/static/vendor/uplot/uPlot.iife.min.js", "text/javascript"),
                       ("/dashboard/static/vendor/uplot/uPlot.min.css", "text/css")):  # fmt: skip
        async with http.get(f"{url}{path}") as response:
            assert response.status == 200, path
            assert response.content_type == kind, path
            assert "default-src 'self'" in response.headers["Content-Security-Policy"]
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            found[path] = (response.headers["ETag"], await response.read())
    page = found["/dashboard"][1].decode()
    # Everything the page loads is one of the files above: nothing from elsewhere.
    for src in ("dashboard.js", "vendor/uplot/uPlot.iife.min.js", "dashboard.css"):
        assert f'"/dashboard/static/{src}"' in page, src
    assert "http://" not in page and "https://" not in page
    etag = found["/dashboard/static/dashboard.js"][0]
    async with http.get(f"{url}/dashboard/static/dashboard.js",
                        headers={"If-None-Match": etag}) as response:  # fmt: skip
        assert response.status == 304 and await response.read() == b""
    # Sent as written (encoded=True: the client would resolve the dots itself).
    for path in ("/dashboard/static/nope.js", "/dashboard/static/../_app.py",
                 "/dashboard/static/%2e%2e/_app.py", "/dashboard/static/..%2f_app.py",
                 "/dashboard/static/vendor/uplot/LICENSE", "/dashboard/static//etc/passwd",
                 "/dashboard/static/dashboard.js%00"):  # fmt: skip
        async with http.get(yarl.URL(f"{url}{path}", encoded=True)) as response:
            assert response.status == 404, path
            assert b"import" not in await response.read()
