"""The API docs page works offline (Swagger UI served by this site) and only for logged-in users."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from tests.conftest import log_in, screenshot

pytestmark = pytest.mark.django_db(transaction=True)

RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(e.violatedDirective + " " + e.blockedURI);
});
"""


def test_anonymous_visitors_get_no_docs_and_no_schema(client):
    response = client.get("/api/docs/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert client.get("/api/schema/").status_code in (401, 403)


def test_api_docs_render_with_no_network_under_the_content_policy(strict_page, live_server, make_user):
    """Every request outside this site is cut off, as on a machine with no network: the docs still draw."""
    page = strict_page
    make_user("reader")
    site = urlsplit(live_server.url).netloc
    outside: list[str] = []

    def offline(route):
        if urlsplit(route.request.url).netloc == site:
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", offline)
    page.add_init_script(RECORD_VIOLATIONS)
    log_in(page, "reader")
    page.goto("/api/docs/")
    title = page.locator(".swagger-ui .info .title")
    title.wait_for(timeout=30_000)
    assert "Stepmark API" in title.inner_text()
    # The operations of the schema are listed (the schema loaded through the session).
    page.locator(".swagger-ui .opblock").first.wait_for(timeout=30_000)
    assert page.locator(".swagger-ui .opblock").count() > 10
    screenshot(page, "api-docs-offline")
    assert outside == [], f"the docs page asked for outside resources: {outside}"
    assert page.evaluate("window.__cspViolations") == []
