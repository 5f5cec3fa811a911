"""The dashboard's admin pages, on the stock admin site: ``Dashboard`` (a proxy model with no
table of its own) gives them the address ``admin/seacucumber/dashboard/``, a line on the admin
index, and the admin's login for anyone not staff (``AdminSite.admin_view``).

- ``admin/seacucumber/dashboard/``: the account at a glance (``data.overview``);
- ``admin/seacucumber/dashboard/timeline/?q=<address or id>``: every send to an address, or
  the send with an id, with its timeline (``timeline.lookup``);
- ``admin/seacucumber/dashboard/release/`` (POST): release a lane the reputation guard
  holds, for users who also hold ``RELEASE_PERMISSION``.

Both show what the admin's own pages guard with model permissions (recipients, subjects and
SES's diagnostics of status records; the suppression list), so both need the same view
permissions (``VIEW_PERMISSIONS``): staff without them get 403 and no line on the index.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from ..conf import lanes
from ..models import Dashboard
from ..operations import usage
from ..shared import reputation
from . import charts, data, timeline

#: The permissions a user needs for the dashboard's pages: the view permissions of the models
#: they show, as the admin's changelists of those models ask.
VIEW_PERMISSIONS = ("seacucumber.view_messagestatus", "seacucumber.view_suppressedaddress")
#: What releasing a lane the reputation guard holds needs, beside the view permissions: the
#: dashboard's own change permission (sends the lane held go out again).
RELEASE_PERMISSION = "seacucumber.change_dashboard"


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
            path("release/", view(self.release_view), name="seacucumber_dashboard_release"),
        ]

    def may_release(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request) and request.user.has_perm(RELEASE_PERMISSION)

    def release_view(self, request: HttpRequest) -> HttpResponse:
        """``POST lane=<name>``: end the reputation guard's hold on the lane (as
        ``manage.py ses_reputation release`` does), then back to the dashboard."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.may_release(request):
            raise PermissionDenied
        lane = request.POST.get("lane", "")
        if lane not in {found.name for found in lanes()}:
            return HttpResponseBadRequest("unknown lane")
        hold = reputation.release(lane)
        if hold is None:
            messages.info(request, f"Lane {lane} was not held.")
        else:
            messages.success(request, f"Lane {lane} released: its mail goes out again "
                             f"(it was held: {hold.describe()}).")
        return HttpResponseRedirect(reverse("admin:seacucumber_dashboard_changelist"))

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
            "may_release": self.may_release(request),
            "sandbox_means": usage.SANDBOX_MEANS,
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
