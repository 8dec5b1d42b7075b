"""The JSON-first negotiation picks exactly what DRF's default picks, only faster for API clients."""

import pytest
from drf_spectacular.renderers import OpenApiJsonRenderer, OpenApiJsonRenderer2, OpenApiYamlRenderer
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer, TemplateHTMLRenderer
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from stepmark.negotiation import JsonFirstContentNegotiation

RENDERER_LISTS = {
    "api": [JSONRenderer(), BrowsableAPIRenderer()],
    "schema": [OpenApiYamlRenderer(), OpenApiJsonRenderer(), OpenApiJsonRenderer2()],
    "html first": [TemplateHTMLRenderer(), JSONRenderer()],
}
ACCEPTS = [None, "*/*", "application/json", " application/json ", "text/html", "text/html,*/*;q=0.8", "application/yaml"]


@pytest.mark.parametrize("renderers", sorted(RENDERER_LISTS))
@pytest.mark.parametrize("accept", ACCEPTS)
@pytest.mark.parametrize("query", ["", "?format=json", "?page=2"])
def test_it_chooses_what_the_default_negotiation_chooses(renderers, accept, query):
    headers = {} if accept is None else {"HTTP_ACCEPT": accept}
    request = Request(APIRequestFactory().get("/api/projects/" + query, **headers))
    choices = RENDERER_LISTS[renderers]

    def choose(negotiation):
        try:
            renderer, media_type = negotiation.select_renderer(request, choices)
        except Exception as exc:  # noqa: BLE001 - both must fail alike (406)
            return type(exc).__name__
        return type(renderer).__name__, media_type

    assert choose(JsonFirstContentNegotiation()) == choose(DefaultContentNegotiation())


def test_api_calls_use_it():
    from rest_framework.settings import api_settings

    assert api_settings.DEFAULT_CONTENT_NEGOTIATION_CLASS is JsonFirstContentNegotiation
