from django.apps import AppConfig


class WorkersConfig(AppConfig):
    name = "workers"
    verbose_name = "Workers"

    def ready(self):
        from workers import mc_runner, prelabel_runner  # noqa: F401 - register the mc_label, sample_solutions and prm_prelabel runners
