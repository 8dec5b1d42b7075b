from django.apps import AppConfig


class AnnotationConfig(AppConfig):
    name = "annotation"
    verbose_name = "Annotation"

    def ready(self) -> None:
        from stepmark.converters import register_id_converter

        register_id_converter()  # before any URL conf is read: every app's routes use `<id:...>`
