from django.apps import AppConfig


class PrmConfig(AppConfig):
    name = "prm"
    verbose_name = "Process reward models"

    def ready(self):
        from prm import (
            evaluate_runner,  # noqa: F401 - "evaluate" job runner; new candidates get evaluated
            train_runner,  # noqa: F401 - registers the "train" job runner
        )
