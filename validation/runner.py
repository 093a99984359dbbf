"""Running the suites with Great Expectations 1.x: an ephemeral context with a pandas datasource,
one whole-dataframe batch definition, validation definition and checkpoint per suite, and an
``UpdateDataDocsAction`` that builds the Data Docs site into the caller's ``docs_dir``.

The context is created on first use and reused within the process (creating it and registering the
suites costs more than validating 4,177 rows). Nothing happens at import time. Calls are serialised
with a lock because the Data Docs site location is part of the shared context's configuration.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

log = logging.getLogger(__name__)

SITE_NAME = "abalone_data_docs"
RESULT_FORMAT = {"result_format": "COMPLETE"}  # all unexpected row numbers, for quarantine


@dataclass
class SuiteRun:
    """What to validate: a suite (by name, built on first use by ``expectations``) and its frame."""

    name: str
    expectations: Callable[[], list]
    frame: pd.DataFrame


_PAGE_VIEW = {"module_name": "validation.docs_views", "class_name": "CachedJinjaPageView"}
_INDEX_VIEW = {"module_name": "validation.docs_views", "class_name": "CachedJinjaIndexPageView"}


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
            "validations": {"view": _PAGE_VIEW},
            "profiling": "None",
        },
    }


class GXRuntime:
    """One ephemeral GX context holding the abalone suites and their checkpoints."""

    def __init__(self) -> None:
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
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
        self._checkpoints: dict[tuple[str, bool], Any] = {}
        self.lock = threading.Lock()

    def _checkpoint(self, run: SuiteRun, docs: bool) -> Any:
        key = (run.name, docs)
        if key in self._checkpoints:
            return self._checkpoints[key]
        gx = self._gx
        from great_expectations.checkpoint import UpdateDataDocsAction

        suites = self.context.suites
        try:
            suite = suites.get(run.name)
        except Exception:  # GX raises its own not-found error types; any failure means "add it"
            suite = suites.add(gx.ExpectationSuite(name=run.name, expectations=run.expectations()))
        vd_name = f"{run.name}_definition"
        try:
            definition = self.context.validation_definitions.get(vd_name)
        except Exception:
            asset = self.datasource.add_dataframe_asset(run.name)
            batch = asset.add_batch_definition_whole_dataframe(f"{run.name}_frame")
            definition = self.context.validation_definitions.add(
                gx.ValidationDefinition(name=vd_name, data=batch, suite=suite)
            )
        actions = [UpdateDataDocsAction(name="update_data_docs", site_names=[SITE_NAME])]
        checkpoint = self.context.checkpoints.add(
            gx.Checkpoint(
                name=f"{run.name}_checkpoint" + ("_docs" if docs else ""),
                validation_definitions=[definition],
                actions=actions if docs else [],
                result_format=RESULT_FORMAT,
            )
        )
        self._checkpoints[key] = checkpoint
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
                checkpoint = self._checkpoint(run, docs=docs_dir is not None)
                outcome = checkpoint.run(batch_parameters={"dataframe": run.frame}, run_id=run_id)
                results.extend(outcome.run_results.values())
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
