from django.apps import AppConfig


class WorkersConfig(AppConfig):
    name = "workers"
    verbose_name = "Workers"

    def ready(self):
        from workers import mc_runner  # noqa: F401 - registers the mc_label and sample_solutions runners
        from workers import prelabel_runner  # noqa: F401 - registers the prm_prelabel runner
