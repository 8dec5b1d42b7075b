"""The Content-Security-Policy header on what a browser could run: every response but JSON.

A JSON body is never executed as a page, and the policy costs django-csp about 0.3 ms to build
per response (two builds, enforced and report-only): a fifth of a label save's Python
(benchmarks/annotation_load.py). Pages, the API docs, images and files keep the policy.
"""

from __future__ import annotations

from csp.middleware import CSPMiddleware


class DocumentCSPMiddleware(CSPMiddleware):
    def process_response(self, request, response):
        if response.get("Content-Type", "").startswith("application/json"):
            return response
        return super().process_response(request, response)
