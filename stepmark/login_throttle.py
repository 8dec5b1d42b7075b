"""Failed-login throttling with django-axes: per account and per address, with a clear message."""

from __future__ import annotations

from axes.backends import AxesStandaloneBackend
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.shortcuts import render

LOCKED_OUT_MESSAGE = (
    "Too many failed logins for this account or from this address. "
    "Try again in {wait}, or ask an administrator to unlock it."
)


class LoginThrottleBackend(AxesStandaloneBackend):
    """Axes' check before every login through a request (the login page, the admin).

    A login without a request (a script or test calling `authenticate()` directly) comes from
    inside the server, not from a visitor, and is not throttled.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


def locked_out_message() -> str:
    minutes = max(1, round(settings.AXES_COOLOFF_TIME.total_seconds() / 60))
    return LOCKED_OUT_MESSAGE.format(wait=f"{minutes} minute" + ("" if minutes == 1 else "s"))


def login_locked_out(request, *args, **kwargs):
    """The login page again, with the lockout message (429), instead of axes' bare text."""
    # An unbound form: binding it would try the login again.
    context = {"form": AuthenticationForm(request), "locked_out": locked_out_message(), "next": request.POST.get("next", "")}
    return render(request, "registration/login.html", context, status=429)
