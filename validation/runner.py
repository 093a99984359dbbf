"""Running the suites with Great Expectations 1.x: an ephemeral context with a pandas datasource,
one whole-dataframe batch definition, validation definition and checkpoint per suite, and an
``UpdateDataDocsAction`` that builds the Data Docs site into the caller's ``docs_dir``, made
self-contained afterwards (vendored CSS/JS/fonts, relative links: ``validation.offline``).

Without a ``docs_dir`` the same suites run on the same batch through ``Batch.validate`` instead of
the checkpoint: identical expectations and results, minus the checkpoint's store round trips
(freshness checks of checkpoint, validation definition and suite, storing the results), which only
the Data Docs need. That is about a fifth of the validation time.

The context is created on first use and reused within the process (creating it and registering the
suites costs more than validating 4,177 rows). Nothing happens at import time. Calls are serialised
with a lock because the Data Docs site location is part of the shared context's configuration.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from validation.offline import make_self_contained

log = logging.getLogger(__name__)

SITE_NAME = "abalone_data_docs"
# COMPLETE: every unexpected row number, for the quarantine. The pandas "query" GX would add next
# to them (``df.filter(items=[...])``: the same row numbers again) is not computed (a few % of the
# validation time); the Data Docs still list each unexpected value with its row numbers.
RESULT_FORMAT = {"result_format": "COMPLETE", "return_unexpected_index_query": False}


@dataclass
class SuiteRun:
    """What to validate: a suite (by name, built on first use by ``expectations``) and its frame."""

    name: str
    expectations: Callable[[], list]
    frame: pd.DataFrame
    notes: str | None = None  # markdown, shown on the suite's and its validations' Data Docs pages


_PAGE_VIEW = {"module_name": "validation.docs_views", "class_name": "CachedJinjaPageView"}
_INDEX_VIEW = {"module_name": "validation.docs_views", "class_name": "CachedJinjaIndexPageView"}
_VALIDATION_RENDERER = {
    "module_name": "validation.docs_views",
    "class_name": "SeverityValidationResultsPageRenderer",
}


def _site_config(base_directory: Path) -> dict[str, Any]:
    """A local Data Docs site in ``base_directory`` (validation results and suite pages, index)."""
    return {
        "class_name": "SiteBuilder",
        "show_how_to_buttons": False,
        "store_backend": {
            "class_name": "TupleFilesystemStoreBackend",
            "base_directory": str(base_directory),
        },
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder", "view": _INDEX_VIEW},
        "site_section_builders": {
            "expectations": {"view": _PAGE_VIEW},
            "validations": {"view": _PAGE_VIEW, "renderer": _VALIDATION_RENDERER},
            "profiling": "None",
        },
    }


@contextlib.contextmanager
def _long_lived_objects() -> Iterator[None]:
    """Importing Great Expectations creates some 400,000 objects that live as long as the process
    (modules, classes, pydantic models): the cyclic garbage collector is paused while they are made
    (its passes over them found nothing and cost half a second) and they are then frozen out of
    later passes (:func:`gc.freeze`), which otherwise rescan them all - another half second over a
    monitoring run and its exit. Reference counting still frees everything as before."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
    gc.freeze()


class GXRuntime:
    """One ephemeral GX context holding the abalone suites and their checkpoints."""

    def __init__(self) -> None:
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
        with _long_lived_objects():
            import great_expectations as gx
            from great_expectations.data_context.types.base import (
                DataContextConfig,
                InMemoryStoreBackendDefaults,
                ProgressBarsConfig,
            )

        self._gx = gx
        config = DataContextConfig(
            # no default temp-dir docs site: the only site is the caller's docs_dir
            store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
            analytics_enabled=False,
            progress_bars=ProgressBarsConfig(globally=False),
        )
        self.context = gx.get_context(mode="ephemeral", project_config=config)
        self._docs_dir: Path | None = None
        self.datasource = self.context.data_sources.add_pandas("abalone")
        self._definitions: dict[str, Any] = {}
        self._checkpoints: dict[str, Any] = {}
        self.lock = threading.Lock()

    def _definition(self, run: SuiteRun) -> Any:
        """The suite's validation definition (suite + whole-dataframe batch), added on first use."""
        if run.name in self._definitions:
            return self._definitions[run.name]
        gx = self._gx
        suites = self.context.suites
        try:
            suite = suites.get(run.name)
        except Exception:  # GX raises its own not-found error types; any failure means "add it"
            suite = suites.add(
                gx.ExpectationSuite(name=run.name, expectations=run.expectations(), notes=run.notes)
            )
        vd_name = f"{run.name}_definition"
        try:
            definition = self.context.validation_definitions.get(vd_name)
        except Exception:
            asset = self.datasource.add_dataframe_asset(run.name)
            batch = asset.add_batch_definition_whole_dataframe(f"{run.name}_frame")
            definition = self.context.validation_definitions.add(
                gx.ValidationDefinition(name=vd_name, data=batch, suite=suite)
            )
        self._definitions[run.name] = definition
        return definition

    def _checkpoint(self, run: SuiteRun) -> Any:
        """A checkpoint for the suite whose ``UpdateDataDocsAction`` builds the Data Docs site."""
        if run.name in self._checkpoints:
            return self._checkpoints[run.name]
        from great_expectations.checkpoint import UpdateDataDocsAction

        definition = self._definition(run)
        actions = [UpdateDataDocsAction(name="update_data_docs", site_names=[SITE_NAME])]
        checkpoint = self.context.checkpoints.add(
            self._gx.Checkpoint(
                name=f"{run.name}_checkpoint",
                validation_definitions=[definition],
                actions=actions,
                result_format=RESULT_FORMAT,
            )
        )
        self._checkpoints[run.name] = checkpoint
        return checkpoint

    def _point_docs_at(self, docs_dir: Path) -> None:
        docs_dir.mkdir(parents=True, exist_ok=True)
        if self._docs_dir is None:
            self.context.add_data_docs_site(SITE_NAME, _site_config(docs_dir))
        elif self._docs_dir != docs_dir:
            self.context.update_data_docs_site(SITE_NAME, _site_config(docs_dir))
        self._docs_dir = docs_dir

    def _forget_previous_results(self) -> None:
        """Each site lists only this call's validations (the in-memory store would accumulate)."""
        store = self.context.validation_results_store
        for key in list(store.list_keys()):
            store.remove_key(key)

    def run(self, runs: list[SuiteRun], *, run_name: str, docs_dir: Path | None) -> list[Any]:
        """Run each suite on its frame; returns GX ``ExpectationSuiteValidationResult`` objects."""
        from great_expectations.core.run_identifier import RunIdentifier

        run_id = RunIdentifier(run_name=run_name, run_time=dt.datetime.now(dt.UTC))
        results = []
        with self.lock:
            self._forget_previous_results()
            if docs_dir is not None:
                self._point_docs_at(docs_dir)
            for run in runs:
                parameters = {"dataframe": run.frame}
                if docs_dir is None:  # validation only: the same suite on the same batch, unstored
                    definition = self._definition(run)
                    batch = definition.batch_definition.get_batch(parameters)
                    results.append(batch.validate(definition.suite, result_format=RESULT_FORMAT))
                else:
                    outcome = self._checkpoint(run).run(batch_parameters=parameters, run_id=run_id)
                    results.extend(outcome.run_results.values())
            if docs_dir is not None:
                make_self_contained(docs_dir)
        return results


_RUNTIME: list[GXRuntime] = []
_RUNTIME_LOCK = threading.Lock()


def runtime() -> GXRuntime:
    """The process-wide GX runtime, created on first use (not at import time)."""
    with _RUNTIME_LOCK:
        if not _RUNTIME:
            log.debug("creating the Great Expectations context")
            _RUNTIME.append(GXRuntime())
        return _RUNTIME[0]
