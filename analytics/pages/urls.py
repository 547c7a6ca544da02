"""The pages under `/app/`; an application's pages under `/app/<app_uuid>/`."""

from django.contrib.auth import views as auth_views
from django.urls import path, reverse_lazy

from . import adoption_views, insight_views, revenue_views, sequence_views, views

app_name = "pages"

urlpatterns = [
    path("", views.home, name="home"),
    path(
        "login/",
        auth_views.LoginView.as_view(template_name="analytics/pages/login.html", redirect_authenticated_user=True),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path(
        "password/",
        auth_views.PasswordChangeView.as_view(
            template_name="analytics/pages/password_change_form.html",
            success_url=reverse_lazy("pages:password_change_done"),
        ),
        name="password_change",
    ),
    path(
        "password/done/",
        auth_views.PasswordChangeDoneView.as_view(template_name="analytics/pages/password_change_done.html"),
        name="password_change_done",
    ),
    path("<uuid:app_uuid>/", views.overview, name="overview"),
    path("<uuid:app_uuid>/pages/", views.pages, name="pages"),
    path("<uuid:app_uuid>/pages/trend/", views.page_trend, name="page_trend"),
    path("<uuid:app_uuid>/features/", views.features, name="features"),
    path("<uuid:app_uuid>/features/<str:name>/adoption/", adoption_views.feature_adoption, name="feature_adoption"),
    path("<uuid:app_uuid>/organizations/", views.organizations, name="organizations"),
    path("<uuid:app_uuid>/organizations/<path:customer_org_id>/", views.organization, name="organization"),
    path("<uuid:app_uuid>/settings/health/", views.health_model, name="health_model"),
    # An org id of dots only ("..") cannot be a path segment (browsers resolve it): it comes as `?id=`.
    path("<uuid:app_uuid>/organization/", views.organization_by_id, name="organization_by_id"),
    # issue 20: revenue pages
    path("<uuid:app_uuid>/revenue/", revenue_views.revenue_page, name="revenue"),
    path("<uuid:app_uuid>/revenue-health/", revenue_views.revenue_health_page, name="revenue_health"),
    path("<uuid:app_uuid>/signals/", revenue_views.signals_page, name="signals"),
    path("<uuid:app_uuid>/settings/organization-data/", revenue_views.org_data_page, name="org_data"),
    path("<uuid:app_uuid>/organization-notes/", revenue_views.org_note, name="org_note"),
    path("<uuid:app_uuid>/organization-tags/", revenue_views.org_tag, name="org_tag"),
    path("<uuid:app_uuid>/stream/", views.stream, name="stream"),
    path("<uuid:app_uuid>/stream/rows/", views.stream_rows, name="stream_rows"),
    path("<uuid:app_uuid>/explorer/", views.explorer, name="explorer"),
    path("<uuid:app_uuid>/explorer.csv", views.explorer_csv, name="explorer_csv"),
    path("<uuid:app_uuid>/funnels/", sequence_views.funnels, name="funnels"),
    path("<uuid:app_uuid>/funnels.csv", sequence_views.funnels_csv, name="funnels_csv"),
    path("<uuid:app_uuid>/funnels/dropoff/", sequence_views.funnel_dropoff, name="funnel_dropoff"),
    path("<uuid:app_uuid>/retention/", sequence_views.retention, name="retention"),
    path("<uuid:app_uuid>/retention.csv", sequence_views.retention_csv, name="retention_csv"),
    path("<uuid:app_uuid>/insights/", insight_views.insights, name="insights"),
    path("<uuid:app_uuid>/insights/save/", insight_views.insight_save, name="insight_save"),
    path("<uuid:app_uuid>/insights/<int:insight_id>/", insight_views.insight, name="insight"),
    path("<uuid:app_uuid>/insights/<int:insight_id>/change/", insight_views.insight_change, name="insight_change"),
]
