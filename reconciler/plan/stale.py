"""Whether a saved plan may still be carried out: like Terraform's "Saved plan is stale".

A plan records digests of what it was computed from (`PlanInputs`); `stale` compares them with
the same digests taken now and says, for each input that changed, what changed and what to do.
Pure: the caller takes the fresh digests (`Pipeline.inputs`).
"""

from __future__ import annotations

from reconciler.plan.model import Plan, PlanInputs

__all__ = ["stale"]


def stale(saved: Plan, fresh_inputs: PlanInputs, *, plan_file: str = "FILE") -> list[str]:
    """One line per input that changed since `saved` was computed; [] when none did.
    `plan_file` is the saved plan's path, for the command that makes it again."""
    again = f"run `reconcile plan -o {plan_file}` again"
    old, new = saved.inputs, fresh_inputs
    if old is None:
        return [f"the saved plan does not record what it was computed from; {again}"]
    out = []
    if old.desired != new.desired:
        out.append(
            f"the desired file (or a variable it reads) changed since the plan was saved; {again}"
        )
    if old.lock != new.lock:
        if old.lock is None:
            what = "a lock file appeared"
        elif new.lock is None:
            what = "the lock file was removed"
        else:
            what = "the lock file changed"
        out.append(f"{what} since the plan was saved; {again}")
    if old.facts != new.facts:
        line = _facts(old, new)
        if line:
            out.append(f"{line}; {again}")
    if old.tool_version != new.tool_version:
        out.append(
            f"the plan was saved by reconcile {old.tool_version} and this is reconcile "
            f"{new.tool_version}; {again} with this version"
        )
    if old.observed != new.observed:
        out.append(
            "the machine changed since the plan was saved (its GPUs, the programs holding "
            f"their memory or the instances running; observed {old.observed} -> "
            f"{new.observed}); {again}"
        )
    return out


def _facts(old: PlanInputs, new: PlanInputs) -> str | None:
    """Which models' facts differ; None when only the set of models did, with the desired
    file (said already)."""
    before, after = old.facts_by_model, new.facts_by_model
    changed = sorted(m for m in before.keys() & after.keys() if before[m] != after[m])
    if len(changed) == 1:
        return (
            f"the model file of {changed[0]} changed since the plan was saved (its GGUF, or "
            "its entry in the lock file, gives other facts)"
        )
    if changed:
        return (
            f"the model files of {', '.join(changed)} changed since the plan was saved (their "
            "GGUFs, or their entries in the lock file, give other facts)"
        )
    if old.desired != new.desired and before:
        return None
    return "the model files changed since the plan was saved (their facts differ)"
