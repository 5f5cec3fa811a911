"""The dashboard's admin pages, on the stock admin site: ``Dashboard`` (a proxy model with no
table of its own) gives them the address ``admin/seacucumber/dashboard/``, a line on the admin
index, and the admin's login for anyone not staff (``AdminSite.admin_view``).

- ``admin/seacucumber/dashboard/``: the account at a glance (``data.overview``);
- ``admin/seacucumber/dashboard/timeline/?q=<address or id>``: every send to an address, or
  the send with an id, with its timeline (``timeline.lookup``).

Both show what the admin's own pages guard with model permissions (recipients, subjects and
SES's diagnostics of status records; the suppression list), so both need the same view
permissions (``VIEW_PERMISSIONS``): staff without them get 403 and no line on the index.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path

from ..models import Dashboard
from ..operations import usage
from . import charts, data, timeline

#: The permissions a user needs for the dashboard's pages: the view permissions of the models
#: they show, as the admin's changelists of those models ask.
VIEW_PERMISSIONS = ("seacucumber.view_messagestatus", "seacucumber.view_suppressedaddress")


class DashboardAdmin(admin.ModelAdmin):
    """Read-only pages for staff who may view status records and the suppression list:
    nothing to add, change or delete."""

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        user = request.user
        return bool(user.is_active and user.is_staff and user.has_perms(VIEW_PERMISSIONS))

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path("", view(self.dashboard_view), name="seacucumber_dashboard_changelist"),
            path("timeline/", view(self.timeline_view), name="seacucumber_dashboard_timeline"),
        ]

    def _context(self, request: HttpRequest, title: str) -> dict[str, Any]:
        """The admin's context for a page, once the user may see it (403 otherwise, as a
        changelist answers)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        return {**self.admin_site.each_context(request), "title": title,
                "opts": self.model._meta}

    def dashboard_view(self, request: HttpRequest) -> HttpResponse:
        base = self._context(request, "Sea Cucumber dashboard")
        overview = data.overview()
        gauges = overview.gauges
        quota = gauges.quota
        bounce_review, bounce_pause = data.LEVELS["bounce"]
        complaint_review, complaint_pause = data.LEVELS["complaint"]
        context = {
            **base,
            "overview": overview,
            "gauges": gauges,
            "quota": quota,
            "percent_used": quota.percent_used if quota else None,
            "outcomes": overview.sends_48h,
            "hourly_chart": charts.hourly_sends(overview.hours),
            "bounce_chart": charts.rate_line(
                "Bounce rate per day against SES's review and pause levels",
                [(d.date.isoformat(), d.bounce_rate) for d in overview.days],
                bounce_review, bounce_pause),
            "complaint_chart": charts.rate_line(
                "Complaint rate per day against SES's review and pause levels",
                [(d.date.isoformat(), d.complaint_rate) for d in overview.days],
                complaint_review, complaint_pause),
            "hold_text": (usage.duration(gauges.quota_hold_seconds)
                          if gauges.quota_hold_seconds else None),
            "reputation_holds": data.reputation_holds(),
        }
        return TemplateResponse(request, "seacucumber/dashboard.html", context)

    def timeline_view(self, request: HttpRequest) -> HttpResponse:
        base = self._context(request, "Send timeline")
        query = request.GET.get("q", "").strip()
        too_long = len(query) > timeline.MAX_QUERY
        found = timeline.lookup(query) if query and not too_long else None
        context = {**base, "query": query[:timeline.MAX_QUERY], "found": found,
                   "too_long": len(query) if too_long else None,
                   "max_query": timeline.MAX_QUERY}
        return TemplateResponse(request, "seacucumber/timeline.html", context)


admin.site.register(Dashboard, DashboardAdmin)
