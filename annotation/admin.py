"""Django admin for every annotation model. Large tables use raw id fields and skip full counts."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db.models import Count

from annotation.api.streaming import export_response
from annotation.models import (
    Assignment,
    AutoLabel,
    GoldLabel,
    HumanLabel,
    Image,
    ImportRecord,
    Invitation,
    Item,
    ItemImage,
    LabelChange,
    Membership,
    Project,
    Solution,
    Step,
)
from annotation.selectors import ExportFilters
from annotation.services.assignments import assignment_delete, user_delete
from annotation.services.dataset_export import EXPORT_FORMATS
from annotation.services.projects import item_save, project_save
from annotation.services.queue import solution_slots_recount


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


def _export_action(format_name: str):
    @admin.action(description=f"Export the selected project as {format_name}", permissions=["export"])
    def export(modeladmin, request, queryset):
        projects = list(queryset[:2])
        if len(projects) != 1:
            modeladmin.message_user(request, "Select exactly one project to export.", messages.WARNING)
            return None
        return export_response(project=projects[0], format_name=format_name, filters=ExportFilters())

    export.__name__ = f"export_{format_name.replace('-', '_')}"
    return export


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "overlap", "label_mode", "show_machine_labels", "item_count", "created_at"]
    list_filter = ["label_mode", "show_machine_labels"]
    search_fields = ["name"]
    inlines = [MembershipInline]
    actions = [_export_action(name) for name in EXPORT_FORMATS]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(item_count=Count("items"))

    @admin.display(description="items", ordering="item_count")
    def item_count(self, obj) -> int:
        return obj.item_count

    def save_model(self, request, obj, form, change):
        project_save(project=obj)  # an edited overlap reopens or closes the queue

    def has_export_permission(self, request) -> bool:
        # The admin is staff-only already; say so here too, so the action never outlives that rule.
        return request.user.is_active and request.user.is_staff and self.has_view_permission(request)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "project", "role", "created_at"]
    list_filter = ["role", "project"]
    search_fields = ["user__username", "project__name"]
    autocomplete_fields = ["user", "project"]
    list_select_related = ["user", "project"]


@admin.register(Image)
class ImageAdmin(admin.ModelAdmin):
    list_display = ["sha256", "format", "width", "height", "size_bytes", "created_at"]
    list_filter = ["format"]
    search_fields = ["=sha256"]
    readonly_fields = ["sha256", "format", "width", "height", "size_bytes"]
    show_full_result_count = False


class ItemImageInline(admin.TabularInline):
    model = ItemImage
    extra = 0
    raw_id_fields = ["image"]


@admin.register(Item)
class ItemAdmin(admin.ModelAdmin):
    list_display = ["external_id", "project", "data_source", "created_at"]
    list_filter = ["project", "data_source"]
    search_fields = ["=external_id", "question"]
    autocomplete_fields = ["project"]
    list_select_related = ["project"]
    inlines = [ItemImageInline]
    show_full_result_count = False

    def save_model(self, request, obj, form, change):
        item_save(item=obj)  # an item moved to another project takes its solutions along


@admin.register(ItemImage)
class ItemImageAdmin(admin.ModelAdmin):
    list_display = ["item", "position", "image", "source_path"]
    search_fields = ["=item__external_id", "source_path"]
    raw_id_fields = ["item", "image"]
    list_select_related = ["item", "image"]
    show_full_result_count = False


class StepInline(admin.TabularInline):
    model = Step
    fields = ["index", "text"]
    readonly_fields = ["index", "text"]
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Solution)
class SolutionAdmin(admin.ModelAdmin):
    list_display = ["id", "item", "key", "policy_model", "is_correct", "priority", "created_at"]
    list_filter = ["is_correct", "item__project"]
    search_fields = ["=item__external_id", "key", "policy_model"]
    raw_id_fields = ["item"]
    list_select_related = ["item"]
    inlines = [StepInline]
    show_full_result_count = False


@admin.register(Step)
class StepAdmin(admin.ModelAdmin):
    list_display = ["id", "solution", "index", "text"]
    search_fields = ["=solution__item__external_id", "text"]
    raw_id_fields = ["solution"]
    show_full_result_count = False


@admin.register(HumanLabel)
class HumanLabelAdmin(admin.ModelAdmin):
    list_display = ["step", "annotator", "value", "updated_at"]
    list_filter = ["value"]
    search_fields = ["annotator__username"]
    raw_id_fields = ["step"]
    autocomplete_fields = ["annotator"]
    list_select_related = ["step", "annotator"]
    show_full_result_count = False


@admin.register(GoldLabel)
class GoldLabelAdmin(admin.ModelAdmin):
    list_display = ["step", "value", "source", "origin", "decided_by", "updated_at"]
    list_filter = ["source", "value"]
    search_fields = ["origin", "decided_by__username"]
    raw_id_fields = ["step"]
    autocomplete_fields = ["decided_by"]
    list_select_related = ["step", "decided_by"]
    show_full_result_count = False


@admin.register(AutoLabel)
class AutoLabelAdmin(admin.ModelAdmin):
    list_display = ["step", "kind", "source", "score", "value", "num_correct", "num_total", "created_at"]
    list_filter = ["kind", "value"]
    search_fields = ["source"]
    raw_id_fields = ["step"]
    list_select_related = ["step"]
    show_full_result_count = False


@admin.register(ImportRecord)
class ImportRecordAdmin(admin.ModelAdmin):
    list_display = ["project", "format", "source_name", "status", "created_by", "started_at", "finished_at"]
    list_filter = ["status", "format", "project"]
    search_fields = ["source_name", "error"]
    readonly_fields = ["started_at", "finished_at"]
    raw_id_fields = ["created_by"]
    list_select_related = ["project", "created_by"]


@admin.register(Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = ["solution", "annotator", "status", "is_gold_check", "seconds_spent", "created_at", "finished_at"]
    list_filter = ["status", "is_gold_check"]
    search_fields = ["annotator__username", "=solution__item__external_id"]
    raw_id_fields = ["solution"]
    autocomplete_fields = ["annotator"]
    list_select_related = ["solution", "annotator"]
    show_full_result_count = False

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        # An edited status or gold-check flag changes whether the assignment holds a queue slot.
        solution_slots_recount(solution_ids=[obj.solution_id, *([form.initial["solution"]] if change else [])])

    def delete_model(self, request, obj):
        assignment_delete(assignment_ids=[obj.pk])  # its slot goes back to the queue

    def delete_queryset(self, request, queryset):
        assignment_delete(assignment_ids=queryset.values_list("pk", flat=True))


@admin.register(LabelChange)
class LabelChangeAdmin(admin.ModelAdmin):
    list_display = ["step", "changed_by", "annotator", "is_gold", "old_value", "new_value", "changed_at"]
    list_filter = ["is_gold"]
    search_fields = ["changed_by__username", "annotator__username"]
    raw_id_fields = ["step"]
    autocomplete_fields = ["changed_by", "annotator"]
    list_select_related = ["step", "changed_by", "annotator"]
    show_full_result_count = False


# People are deleted through the service, so the queue slots their assignments held are freed.
User = get_user_model()
if admin.site.is_registered(User):
    admin.site.unregister(User)


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    def delete_model(self, request, obj):
        user_delete(user_ids=[obj.pk])

    def delete_queryset(self, request, queryset):
        user_delete(user_ids=queryset.values_list("pk", flat=True))


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    """Made and revoked on the project's members page (the link is shown once, there); here to look at."""

    list_display = ["project", "role", "email", "created_by", "created_at", "expires_at", "revoked_at", "accepted_by"]
    list_filter = ["role", "project"]
    search_fields = ["email", "project__name"]
    readonly_fields = ["token_hash", "created_by", "created_at", "accepted_at", "accepted_by"]
    raw_id_fields = ["project"]

    def has_add_permission(self, request) -> bool:
        return False  # a link is only worth its token, which the members page shows to its maker
