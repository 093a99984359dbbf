"""Data Docs page views that reuse one compiled Jinja environment per process.

GX's ``DefaultJinjaView`` builds a fresh ``jinja2.Environment`` for every site build, so every
template is re-compiled on every ingest (most of the Data Docs build time). These subclasses are
plugged in through the site's ``site_section_builders`` / ``site_index_builder`` ``view`` config
(the GX extension point for custom views) and share the first instance's environment, whose
compiled-template cache then survives between builds. Rendering output is unchanged.

Imported only by GX when it builds a site (``module_name`` in the site config).
"""

from __future__ import annotations

import threading

from great_expectations.render.view import DefaultJinjaIndexPageView, DefaultJinjaPageView

_ENVIRONMENTS: dict[tuple, object] = {}
_LOCK = threading.Lock()


def _share_environment(view, base_init, custom_styles_directory, custom_views_directory) -> None:
    key = (type(view), custom_styles_directory, custom_views_directory)
    with _LOCK:
        env = _ENVIRONMENTS.get(key)
        if env is None:
            base_init(view, custom_styles_directory, custom_views_directory)
            _ENVIRONMENTS[key] = view.env
            return
    view.custom_styles_directory = custom_styles_directory
    view.custom_views_directory = custom_views_directory
    view.env = env


class CachedJinjaPageView(DefaultJinjaPageView):
    def __init__(self, custom_styles_directory=None, custom_views_directory=None) -> None:
        _share_environment(
            self, DefaultJinjaPageView.__init__, custom_styles_directory, custom_views_directory
        )


class CachedJinjaIndexPageView(DefaultJinjaIndexPageView):
    def __init__(self, custom_styles_directory=None, custom_views_directory=None) -> None:
        _share_environment(
            self,
            DefaultJinjaIndexPageView.__init__,
            custom_styles_directory,
            custom_views_directory,
        )
