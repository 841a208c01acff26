"""One job engine under every verb (see `engine`): settings dataclass -> compute() -> typed Result -> write()."""

from .engine import Job, Outcome, Result, Run, execute, model_for, plain, provide, run_job

__all__ = ["Job", "Outcome", "Result", "Run", "execute", "model_for", "plain", "provide", "run_job"]
