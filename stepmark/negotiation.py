"""Content negotiation that answers API clients without parsing their Accept header.

Scripts and the load benchmark send `Accept: application/json` (or `*/*`, or nothing) on every call;
DRF's default negotiation parses the header into media types and matches every renderer each
time. For those headers the answer is always the JSON renderer, so it is returned directly;
anything else (a browser asking for HTML, `?format=api`, a format suffix) goes the usual way.
"""

from __future__ import annotations

from rest_framework.negotiation import DefaultContentNegotiation


class JsonFirstContentNegotiation(DefaultContentNegotiation):
    def select_renderer(self, request, renderers, format_suffix=None):
        if format_suffix is None and not request.META.get("QUERY_STRING"):
            accept = request.META.get("HTTP_ACCEPT")
            if accept is None or accept.strip() == "*/*":  # what DRF picks for "anything": the first
                return renderers[0], renderers[0].media_type
            if accept.strip() == "application/json":
                for renderer in renderers:
                    if renderer.media_type == "application/json":
                        return renderer, "application/json"
        return super().select_renderer(request, renderers, format_suffix)
