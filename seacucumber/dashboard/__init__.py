"""The account at a glance, in the Django admin: the dashboard page
(``admin/seacucumber/dashboard/``), the per-address/id timeline, their data (``data``) and
server-rendered SVG charts (``charts``; no JavaScript, no CDN: the page works offline).

It sits beside ``seacucumber.admin`` in the top layers: it reads every layer below
(status records, the shared state, SES's quota) and nothing imports it but the app's
``ready``, which registers its admin page (``dashboard.admin``). The timeline's steps are
written by the webhook (``events.handlers.apply_timeline``).
"""
