"""Data Docs page views that reuse one compiled Jinja environment per process, and a validation
page renderer that shows the suite's severity.

GX's ``DefaultJinjaView`` builds a fresh ``jinja2.Environment`` for every site build, so every
template is re-compiled on every ingest (most of the Data Docs build time). These subclasses are
plugged in through the site's ``site_section_builders`` / ``site_index_builder`` ``view`` config
(the GX extension point for custom views) and share the first instance's environment, whose
compiled-template cache then survives between builds. Rendering output is unchanged.

:class:`SeverityValidationResultsPageRenderer` (the site's ``validations`` renderer) is GX's
validation page with the suite's notes (what a failure in it does: ``validation.suite.SUITE_NOTES``)
right under the overview's "Status", in GX's own text block, so "Failed" on the warning suite is not
read as a rejected batch. GX's suite pages already show the notes.

Imported only by GX when it builds a site (``module_name`` in the site config).
"""

from __future__ import annotations

import threading

from great_expectations.render.components import RenderedMarkdownContent, TextContent
from great_expectations.render.renderer import ValidationResultsPageRenderer
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


class SeverityValidationResultsPageRenderer(ValidationResultsPageRenderer):
    def render(self, validation_results, suite_parameters=None):
        document = super().render(validation_results, suite_parameters)
        notes = self._suite_notes(validation_results.suite_name)
        if notes and document.sections:
            overview = document.sections[0].content_blocks
            overview.insert(1, _notes_block(notes))  # after the header with the status
        return document

    def _suite_notes(self, suite_name: str) -> list[str]:
        if self._data_context is None:
            return []
        try:
            notes = self._data_context.suites.get(suite_name).notes
        except Exception:  # GX raises its own not-found types; a page without notes is still right
            return []
        if isinstance(notes, str):
            return [notes]
        return list(notes or [])


def _notes_block(notes: list[str]) -> TextContent:
    return TextContent(
        content_block_type="text",
        text=[
            RenderedMarkdownContent(content_block_type="markdown", markdown=n, styling={})
            for n in notes
        ],
        styling={"classes": ["col-12", "alert", "alert-info", "mt-2", "mb-2"]},
    )
