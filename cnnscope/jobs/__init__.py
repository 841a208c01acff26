"""One job engine under every verb (see `engine`): settings dataclass -> compute() -> typed Result -> write()."""

from .engine import (
    Job,
    JobsPlanned,
    Outcome,
    Result,
    Run,
    compute_job,
    execute,
    model_for,
    plain,
    planning,
    provide,
    record_job,
    run_job,
    spec_of,
)

__all__ = ["Job", "JobsPlanned", "Outcome", "Result", "Run", "compute_job", "execute", "model_for", "plain", "planning",
           "provide", "record_job",
           "run_job", "spec_of"]
