"""Small builders for tests: a project with items, images, solutions and steps."""

from __future__ import annotations

import io

from PIL import Image as PILImage

from annotation.models import Item, ItemImage, Membership, Project, Solution, Step
from annotation.services.images import image_store


def png_bytes(color=(200, 30, 30), size=(64, 48)) -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def make_solution(project: Project, external_id: str, steps: list[str], *, key="m1", question="What is 2+3?", color=(200, 30, 30)) -> Solution:
    item, created = Item.objects.get_or_create(project=project, external_id=external_id, defaults={"question": question, "answer": "5"})
    if created:
        image, _ = image_store(data=png_bytes(color))
        ItemImage.objects.create(item=item, image=image, position=0, source_path=f"images/{external_id}.png")
    solution = Solution.objects.create(item=item, key=key, policy_model=key, response="\n\n".join(steps))
    Step.objects.bulk_create([Step(solution=solution, index=i, text=t) for i, t in enumerate(steps)])
    return solution


def add_member(project: Project, user, role: str) -> Membership:
    return Membership.objects.create(project=project, user=user, role=role)
