import re

from django import template

register = template.Library()

# Datasets mark where images go in the prompt (<image>, <image1>); the page shows the images beside it.
_IMAGE_PLACEHOLDER = re.compile(r"<image\d*>\s*", re.IGNORECASE)


@register.filter
def without_image_placeholders(text: str) -> str:
    return _IMAGE_PLACEHOLDER.sub("", text or "").strip()


@register.filter
def for_people(name) -> str:
    """A stored key as a person reads it: "steps_labelled" -> "steps labelled"."""
    return str(name).replace("_", " ")
