"""A Step Functions execution as the CLI shows it: its states from the execution history, status,
and the summary of its output (pure: built from API answers, no calls)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

TERMINAL = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")


@dataclass
class StateStep:
    """One state of an execution: entered, then succeeded or failed (poll loops appear once per pass)."""

    name: str
    status: str  # running | succeeded | failed
    entered_at: datetime | None = None
    exited_at: datetime | None = None
    error: str | None = None
    cause: str | None = None
    event_id: int = 0

    @property
    def seconds(self) -> float | None:
        if self.entered_at and self.exited_at:
            return (self.exited_at - self.entered_at).total_seconds()
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "entered_at": self.entered_at.isoformat() if self.entered_at else None,
            "exited_at": self.exited_at.isoformat() if self.exited_at else None,
            "seconds": self.seconds,
            "error": self.error,
            "cause": self.cause,
        }


@dataclass
class ExecutionStatus:
    arn: str
    name: str
    status: str
    started_at: datetime | None
    stopped_at: datetime | None
    steps: list[StateStep] = field(default_factory=list)
    error: str | None = None
    cause: str | None = None
    output: dict[str, Any] | None = None

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    @property
    def ok(self) -> bool:
        return self.status == "SUCCEEDED"

    def summary(self) -> dict[str, Any]:
        """The figures people look for in the output: validation, model version, gate, champion."""
        out = self.output or {}
        result = (out.get("validation") or {}).get("Result") or {}
        promote = (out.get("promote") or {}).get("output") or {}
        gate = (out.get("gate") or {}).get("output") or {}
        system_test = (out.get("system_test") or {}).get("output") or {}
        return {
            "ingest_id": result.get("ingest_id"),
            "data_quality": result.get("status"),
            "dataset_version": result.get("dataset_version"),
            "report_html": result.get("report_html"),
            "model_version": promote.get("model_version") or gate.get("model_version"),
            "system_test_rmse": system_test.get("rmse"),
            "gate": promote.get("decision") or gate.get("decision"),
            "reasons": promote.get("reasons") or gate.get("reasons"),
            "champion_version": promote.get("champion_version"),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "execution_arn": self.arn,
            "name": self.name,
            "status": self.status,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "stopped_at": self.stopped_at.isoformat() if self.stopped_at else None,
            "error": self.error,
            "cause": self.cause,
            "states": [s.to_dict() for s in self.steps],
            "summary": self.summary() if self.output is not None else None,
        }


def steps_from_history(events: Iterable[dict[str, Any]]) -> list[StateStep]:
    """Entered/exited/failed events → one :class:`StateStep` per state visit, in order."""
    steps: list[StateStep] = []
    open_step: StateStep | None = None
    for event in events:
        entered = event.get("stateEnteredEventDetails")
        exited = event.get("stateExitedEventDetails")
        kind = event.get("type", "")
        when = event.get("timestamp")
        if entered:
            open_step = StateStep(entered["name"], "running", entered_at=when, event_id=event["id"])
            steps.append(open_step)
        elif exited and open_step is not None and exited["name"] == open_step.name:
            if open_step.status == "running":
                open_step.status = "succeeded"
            open_step.exited_at = when
            open_step = None
        elif kind.endswith("Failed") and open_step is not None:
            # a task failure inside the state (a Catch may still route on): keep the reason
            details = next((v for k, v in event.items() if k.endswith("FailedEventDetails")), {})
            open_step.status = "failed"
            open_step.error = details.get("error")
            open_step.cause = (details.get("cause") or "")[:500] or None
    return steps
