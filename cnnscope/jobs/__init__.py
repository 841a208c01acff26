"""One job engine under every verb (see `engine`): settings dataclass -> compute() -> typed Result -> write()."""

from .engine import (
    Job,
    Outcome,
    Result,
    Run,
    compute_job,
    execute,
    model_for,
    plain,
    provide,
    record_job,
    run_job,
    spec_of,
)

__all__ = ["Job", "Outcome", "Result", "Run", "compute_job", "execute", "model_for", "plain", "provide", "record_job",
           "run_job", "spec_of"]
