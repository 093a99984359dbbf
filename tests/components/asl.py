"""Structural checks of an Amazon States Language definition (plain dict), used by the tests."""

from __future__ import annotations

from typing import Any

from components.pipeline_definition import ALLOWED_TASK_RESOURCES, SNS_PUBLISH


def transitions(state: dict[str, Any]) -> list[str]:
    """Every state name this state can move to (Next, Default, Choices, Catch)."""
    out = []
    if "Next" in state:
        out.append(state["Next"])
    if "Default" in state:
        out.append(state["Default"])
    for choice in state.get("Choices", []):
        out.append(choice["Next"])
    for catcher in state.get("Catch", []):
        out.append(catcher["Next"])
    return out


def dangling_targets(definition: dict[str, Any]) -> list[str]:
    states = definition["States"]
    problems = [f"StartAt {definition['StartAt']!r}"] if definition["StartAt"] not in states else []
    for name, state in states.items():
        for target in transitions(state):
            if target not in states:
                problems.append(f"{name} → {target}")
    return problems


def reachable(definition: dict[str, Any]) -> set[str]:
    states = definition["States"]
    seen, todo = set(), [definition["StartAt"]]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(transitions(states[name]))
    return seen


def is_notify(state: dict[str, Any]) -> bool:
    return state.get("Type") == "Task" and state.get("Resource") == SNS_PUBLISH


def failure_path_problems(definition: dict[str, Any]) -> list[str]:
    """Every non-notify Task catches States.ALL into a notify state; every notify state ends in a
    Fail; every Fail state is entered only from notify states."""
    states = definition["States"]
    problems = []
    for name, state in states.items():
        if state["Type"] != "Task" or is_notify(state):
            continue
        catch_all = [c for c in state.get("Catch", []) if "States.ALL" in c["ErrorEquals"]]
        if not catch_all:
            problems.append(f"{name}: no Catch on States.ALL")
            continue
        target = states.get(catch_all[0]["Next"], {})
        if not is_notify(target):
            problems.append(f"{name}: Catch goes to {catch_all[0]['Next']}, not an SNS publish")
        elif states.get(target["Next"], {}).get("Type") != "Fail":
            problems.append(f"{name}: after notifying, {target['Next']} is not a Fail state")
    for name, state in states.items():
        if is_notify(state) and state.get("Type") == "Task":
            nxt = states.get(state.get("Next"), {})
            if nxt.get("Type") == "Fail":
                catches = {c["Next"] for c in state.get("Catch", [])}
                if catches - {state["Next"]}:
                    problems.append(f"{name}: a failed publish must still end in {state['Next']}")
    for fail_name, fail in states.items():
        if fail["Type"] != "Fail":
            continue
        preds = [n for n, s in states.items() if fail_name in transitions(s)]
        if not preds:
            problems.append(f"Fail {fail_name} is unreachable")
        for pred in preds:
            if not is_notify(states[pred]):
                problems.append(f"Fail {fail_name} entered from {pred} without an SNS publish")
    return problems


def task_resources(definition: dict[str, Any]) -> set[str]:
    return {s["Resource"] for s in definition["States"].values() if s["Type"] == "Task"}


def unexpected_resources(definition: dict[str, Any]) -> set[str]:
    return task_resources(definition) - ALLOWED_TASK_RESOURCES


def dead_ends(definition: dict[str, Any]) -> list[str]:
    """Non-terminal states without a way out."""
    return [
        name
        for name, state in definition["States"].items()
        if state["Type"] not in ("Succeed", "Fail")
        and not transitions(state)
        and not state.get("End")
    ]


def all_problems(definition: dict[str, Any]) -> list[str]:
    problems = dangling_targets(definition)
    if problems:
        return problems
    unreachable = set(definition["States"]) - reachable(definition)
    problems += [f"unreachable state {n}" for n in sorted(unreachable)]
    problems += failure_path_problems(definition)
    problems += [f"unexpected Task resource {r}" for r in sorted(unexpected_resources(definition))]
    problems += [f"dead end {n}" for n in dead_ends(definition)]
    return problems
