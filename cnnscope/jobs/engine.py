"""The job engine: every verb's work is a list of jobs, run here the same way.

A job is a frozen dataclass whose fields are every setting its output depends on (and nothing else: no
paths, no worker count), a pure ``compute(*models) -> Result`` and a ``write(out, result) -> files``. The
engine writes a job's files first and its JSON record (settings, results, files) last and atomically: the
record is the "done" marker, so a run killed at any moment and started again with the same command skips
finished jobs and loses at most the ones in flight. A job runs single-threaded with a seed derived from its
key, so one process, N worker processes or a Ray cluster write byte-identical files (torch's CPU kernels
give different last bits with different thread counts: use ``workers`` to use more cores).
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing as mp
import signal
import socket
import threading
import time
import zlib
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from PIL import Image

from ..device import follow_environment
from ..errors import CnnscopeError
from ..images import tensor_to_uint8
from ..models import MODULE_PREFIX, Model, ModelSpec, load_spec
from ..progress import Progress, say, units
from ..store import changed_settings, finished, json_safe, write_json
from ..viz.notebook import contact_sheet, png_bytes, result_html


def plain(value):
    """A setting as JSON can hold it: objects by their ``to_dict``, dataclasses field by field, tensors by a
    checksum of their bytes (a direction of 1000 numbers need not be written out to be compared)."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if torch.is_tensor(value):
        data = value.detach().cpu().contiguous()
        return f"tensor{list(data.shape)}:{zlib.crc32(data.numpy().tobytes()):08x}"
    return value


class Result:
    """Base of the typed results jobs return.

    ``to_json`` gives the record's "results": every field but tensors and those marked
    ``field(metadata={"json": False})`` (pictures, fitted modules: they go to files). In a notebook a result
    shows itself (``_repr_png_``: its pictures with their scores; ``_repr_html_``: those and its record as
    tables); ``images`` are its pictures as PIL images; ``save(folder)`` writes what the CLI writes for its job.
    """

    interrupted: bool = False  # a solver stopped by Ctrl-C returns its best so far with this set
    job: Job | None = None  # the job that computed it (set by the engine and the top-level calls)

    def to_json(self) -> dict:
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.metadata.get("omit_empty") and not value:
                continue  # (records written before the field existed stay byte-identical)
            if f.metadata.get("json", True) and not torch.is_tensor(value):
                out[f.name] = value
        if self.interrupted:
            out["interrupted"] = True
        return json_safe(out)

    def pictures(self) -> list[tuple[torch.Tensor, str]]:
        """The result's pictures ([3,H,W] in [0,1]) each with a short caption (its score); none by default."""
        return []

    def columns(self) -> int | None:
        """Pictures per row when shown (None: as many as fit, up to 8)."""
        return None

    @property
    def images(self) -> list[Image.Image]:
        """The pictures as PIL images (RGB, 8 bits), in order."""
        return [Image.fromarray(tensor_to_uint8(p)) for p, _ in self.pictures()]

    def _repr_png_(self) -> bytes | None:
        pictures = self.pictures()
        if not pictures:
            return None  # a table-only result: the notebook shows _repr_html_
        return png_bytes(contact_sheet([p for p, _ in pictures], [c for _, c in pictures], self.columns()))

    def _repr_html_(self) -> str:
        title = type(self).__name__ + (f" ({self.job.key})" if self.job is not None else "")
        return result_html(title, self.to_json(), self._repr_png_())

    def save(self, folder: str | Path) -> list[str]:
        """Write the job's files and its JSON record under `folder`, exactly as the CLI does (a run of the same
        job there later reuses them); return the files' paths relative to `folder`."""
        if self.job is None:
            raise CnnscopeError(f"this {type(self).__name__} was not made by a job: nothing says how to save it")
        return record_job(Path(folder), self.job, self)[1]


@dataclass(frozen=True)
class Job:
    """Base of every job. Subclasses are frozen dataclasses with a ``kind``, a ``key`` (the file stem of
    the record under the output folder, unique within a run) and ``compute`` / ``write``."""

    kind: ClassVar[str] = "job"
    # and a field ``key: str``: the file stem of the job's record under the output folder
    # its time relative to the other jobs of a run (the engine starts the longest first on workers, so one long
    # job does not start last and keep every other worker idle)
    cost: ClassVar[float] = 1.0

    def models(self) -> tuple[ModelSpec, ...]:
        """The models ``compute`` takes, in order (default: the job's ``model`` field)."""
        return (self.model,)  # type: ignore[attr-defined]

    def settings(self) -> dict:
        """Everything the output depends on, as recorded in (and compared against) the JSON record."""
        out: dict[str, Any] = {"job": self.kind}
        for f in dataclasses.fields(self):
            out[f.name] = plain(getattr(self, f.name))
        return json_safe(out)

    def job_seed(self) -> int:
        """The job's seed: its key hashed with its ``seed`` field (if any); the engine seeds torch with it."""
        seed = getattr(self, "seed", 0)
        return (zlib.crc32(self.key.encode()) ^ (seed if isinstance(seed, int) else 0)) & 0x7FFFFFFF

    def compute(self, *models: Model) -> Result:
        raise NotImplementedError

    def write(self, out: Path, result: Result) -> list[str]:
        """Write the job's files under `out`; return their paths relative to `out` (the record lists them)."""
        raise NotImplementedError


@dataclass
class Outcome:
    """A finished job: its record's results (numbers) and files. Never its tensors: a run of thousands of
    jobs keeps only what its summary needs (pictures are read back from the files)."""

    job: Job
    results: dict
    files: list[str]
    reused: bool
    seconds: float | None = None
    result: Result | None = None  # the typed result, only for a run in memory (the API without an output folder)


@dataclass
class Run:
    """What `execute` did: the finished jobs in job order, and whether Ctrl-C stopped it."""

    outcomes: list[Outcome] = field(default_factory=list)
    interrupted: bool = False
    seconds: float = 0.0

    @property
    def computed(self) -> int:
        return sum(not o.reused for o in self.outcomes)

    @property
    def reused(self) -> int:
        return sum(o.reused for o in self.outcomes)


# ---------------------------------------------------------------------------------------------- models
_MODELS: dict[ModelSpec, Model] = {}


def model_for(spec: ModelSpec) -> Model:
    """The model of `spec`, loaded once per process."""
    if spec not in _MODELS:
        if spec.name.startswith(MODULE_PREFIX):
            raise CnnscopeError(f"{spec.name} was given as a Python object: it cannot be sent to worker processes "
                                "or Ray (run without workers, or give it as path/to/file.py:factory)")
        _MODELS[spec] = load_spec(spec)
    return _MODELS[spec]


def provide(spec: ModelSpec, model: Model) -> None:
    """Hand the engine an already loaded model for `spec` (this process only; workers load their own)."""
    _MODELS[spec] = model


def spec_of(model: Model) -> ModelSpec:
    """The spec a job records for `model`, with the model handed to the engine (it need not load it again)."""
    spec = model.job_spec()
    provide(spec, model)
    return spec


def gpus_for(job: Job) -> int:
    """1 if any of the job's models runs on CUDA (what it asks a Ray cluster for), else 0."""
    return int(any(spec.device.startswith("cuda") for spec in job.models()))


# ------------------------------------------------------------------------------------------ one job
def compute_job(job: Job) -> tuple[Result, float]:
    """Compute one job in this process, seeded and single-threaded as the engine always runs it (so the
    Python API and the CLI give the same bytes); the result remembers its job. Returns it and the seconds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a job's bits must not depend on how many jobs run side by side
    follow_environment()
    try:
        torch.manual_seed(job.job_seed())
        models = [model_for(spec) for spec in job.models()]
        start = time.perf_counter()
        result = job.compute(*models)
        seconds = time.perf_counter() - start
    finally:
        torch.set_num_threads(threads)
    result.job = job
    return result, seconds


def record_job(out: Path, job: Job, result: Result) -> tuple[dict, list[str]]:
    """Write a computed job's files, then its record (last and atomically: the record means "done")."""
    files = job.write(out, result)
    results = result.to_json()
    write_json({"settings": job.settings(), "results": results, "files": files}, out / f"{job.key}.json")
    return results, files


def run_job(out: str, job: Job) -> tuple[dict, list[str], float]:
    """Compute one job and write its files, then its record. Top level so worker processes can run it (what
    it returns crosses processes: the record's numbers, not the result's tensors)."""
    result, seconds = compute_job(job)
    results, files = record_job(Path(out), job, result)
    return results, files, seconds


_SIGINT = {signal.SIGINT}
_MASKS = hasattr(signal, "pthread_sigmask")  # POSIX


def _worker_job(out: str, job: Job) -> tuple[dict, list[str], float]:
    """`run_job` in a spawned worker. Its SIGINT is blocked from birth (the thread that starts the workers
    blocks it, and a child inherits the mask), so a Ctrl-C while it imports torch or waits for a job is no
    traceback; the job lets it in: a Ctrl-C during the job interrupts its solver as in this process, one that
    came earlier is delivered at once and the job does not start (the parent is stopping)."""
    if _MASKS:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGINT)
    try:
        return run_job(out, job)
    finally:
        if _MASKS:
            signal.pthread_sigmask(signal.SIG_BLOCK, _SIGINT)


# ------------------------------------------------------------------------------------------ executor
class JobsPlanned(Exception):  # noqa: N818 (not an error: the planned jobs, see `planning`)
    """Raised by `execute` inside `planning`: the settings of the jobs a verb planned, none run."""

    def __init__(self, settings: list[dict]):
        super().__init__(f"{len(settings)} jobs planned")
        self.settings = settings


_PLANNING = threading.local()
IN_MEMORY_JOBS = 256  # a run without an output folder keeps every result; a folder of thousands wants `out`


@contextlib.contextmanager
def planning():
    """Within it, `execute` runs nothing: it raises `JobsPlanned` with the jobs' settings. What the doors' tests
    compare: the CLI and the API planning the same jobs from the same words."""
    _PLANNING.on = True
    try:
        yield
    finally:
        _PLANNING.on = False


def execute(jobs: Sequence[Job], out: str | Path | None, *, workers: int = 1, ray: str | None = None,
            progress: bool = True, desc: str = "jobs") -> Run:
    """Run the jobs not yet done under `out` and return every finished one.

    Parameters
    ----------
    jobs : sequence of Job
        Their keys must be unique.
    out : str, Path or None
        Output folder (made by the first write). None: computed in this process and kept in memory, each
        outcome with its typed ``result`` and nothing written (the Python API without an output folder).
    workers : int
        Worker processes (1: in this process).
    ray : str or None
        A Ray address ("local" starts one here) to run the jobs on instead.
    progress : bool
        Show a progress bar (only on a terminal, and only for more than one job).
    desc : str
        The bar's label.

    Returns
    -------
    Run
        Outcomes in job order (reused and computed), whether Ctrl-C stopped the run, seconds taken.
        After Ctrl-C, finished jobs are kept and the one in flight is not recorded as done.
    """
    keys = [j.key for j in jobs]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise CnnscopeError(f"two jobs would write the same files ({dup}): give distinct settings")
    if getattr(_PLANNING, "on", False):
        raise JobsPlanned([j.settings() for j in jobs])
    if out is None:
        if workers > 1 or ray is not None:  # other processes hand back records, not typed results
            raise CnnscopeError("workers and ray need an output folder (out=…): without one the jobs are computed "
                                "in this process and kept in memory")
        if len(jobs) > IN_MEMORY_JOBS:  # every typed result stays (its pictures, maps): memory grows with them
            raise CnnscopeError(f"{len(jobs)} jobs would all be kept in memory (at most {IN_MEMORY_JOBS}): give an "
                                "output folder (out=…), where memory stays flat and the run resumes")
        return _in_memory(jobs, progress, desc)
    out = Path(out)
    # no folder is made here: a job that refuses its input (before writing) must leave nothing behind
    for stale in out.rglob(".*.part") if out.is_dir() else ():  # temp files of jobs a killed run had in flight
        stale.unlink(missing_ok=True)
    outcomes: dict[str, Outcome] = {}
    pending, changed = [], {}
    for job in jobs:
        record = finished(out, job.key, job.settings())
        if record is None:
            pending.append(job)
            for change in changed_settings(out, job.key, job.settings()):
                changed[change] = changed.get(change, 0) + 1
        else:
            outcomes[job.key] = Outcome(job, record["results"], record["files"], reused=True)
    if changed:  # a resumed folder whose jobs were made otherwise (other options, a newer default): say so
        say(f"{desc}: redoing jobs in {out} made with other settings ("
            + "; ".join(f"{change}: {n} job{'s' if n > 1 else ''}" for change, n in changed.items())
            + "); their files are replaced")
    start, interrupted = time.perf_counter(), False
    with units(len(jobs), desc, "job", done=len(jobs) - len(pending), show=progress) as bar:
        interrupted = _execute(pending, out, workers, ray, outcomes, bar)
    ordered = [outcomes[k] for k in keys if k in outcomes]
    interrupted = interrupted or any(o.results.get("interrupted") for o in ordered)
    return Run(ordered, interrupted, time.perf_counter() - start)


def _in_memory(jobs: Sequence[Job], progress: bool, desc: str) -> Run:
    """Every job computed in this process, its typed result kept (nothing written, nothing reused)."""
    start, outcomes, interrupted = time.perf_counter(), [], False
    with units(len(jobs), desc, "job", done=0, show=progress) as bar:
        try:
            for job in jobs:
                result, seconds = compute_job(job)
                outcomes.append(Outcome(job, result.to_json(), [], False, seconds, result))
                bar.update(1, note=f"{job.key} ({seconds:.1f} s)")
                if result.interrupted:
                    interrupted = True
                    break
        except KeyboardInterrupt:
            interrupted = True
    return Run(outcomes, interrupted, time.perf_counter() - start)


def longest_first(jobs: Sequence[Job]) -> list[Job]:
    """The jobs by declared cost, longest first, else in their order: a long job started last would keep the
    other workers idle while it runs alone."""
    return sorted(jobs, key=lambda j: -j.cost)


def _execute(pending: list[Job], out: Path, workers: int, ray: str | None, outcomes: dict, bar: Progress) -> bool:
    """Run the pending jobs into `outcomes`; True when Ctrl-C (or a solver that caught it) stopped them."""
    interrupted = False

    def done(job: Job, value: tuple) -> bool:
        results, files, seconds = value
        outcomes[job.key] = Outcome(job, results, files, reused=False, seconds=seconds)
        bar.update(1, note=f"{job.key} ({seconds:.1f} s)")
        return bool(results.get("interrupted"))

    try:
        if ray is not None:
            _run_ray(longest_first(pending), out, ray, workers, done)
        elif workers <= 1 or len(pending) <= 1:
            for job in pending:
                if done(job, run_job(str(out), job)):
                    interrupted = True  # the solver caught Ctrl-C: its best so far is written, marked
                    break
        else:
            _run_processes(longest_first(pending), out, workers, done)
    except KeyboardInterrupt:
        interrupted = True
    return interrupted


def _run_processes(jobs: list[Job], out: Path, workers: int, done) -> None:
    """The jobs in `workers` processes: this one and workers-1 spawned ones (so no process waits idle while its
    workers start, and this one's loaded model and caches serve). A helper thread keeps the spawned workers fed
    and collects their records while this thread computes; `done` runs under one lock."""
    # spawn, not fork: a forked copy of a process that already ran torch's thread pools can deadlock
    pool = ProcessPoolExecutor(max_workers=workers - 1, mp_context=mp.get_context("spawn"))
    todo, lock, stop, errors = iter(jobs), threading.Lock(), threading.Event(), []

    def take() -> Job | None:
        with lock:
            return None if stop.is_set() else next(todo, None)

    def feed() -> None:
        running: dict = {}
        if _MASKS:  # this thread starts the workers: they are born with SIGINT blocked (see `_worker_job`)
            signal.pthread_sigmask(signal.SIG_BLOCK, _SIGINT)
        try:
            while not stop.is_set():
                # one job per worker: none waits behind another job on a busy worker while this process, or
                # another worker, could start it (and a Ctrl-C loses little)
                while len(running) < workers - 1:
                    job = take()
                    if job is None:
                        break
                    running[pool.submit(_worker_job, str(out), job)] = job
                if not running:
                    return
                ready, _ = wait(running, timeout=0.1, return_when=FIRST_COMPLETED)
                for f in ready:
                    job = running.pop(f)
                    value = f.result()  # a worker's error is re-raised in this process's thread below
                    with lock:
                        done(job, value)
        except BaseException as e:  # noqa: BLE001 (handed to the main thread, which raises it)
            errors.append(e)
            stop.set()

    helper = threading.Thread(target=feed, name="cnnscope-workers", daemon=True)
    helper.start()
    try:
        while not errors and (job := take()) is not None:
            value = run_job(str(out), job)
            with lock:
                if done(job, value):  # the solver here caught Ctrl-C: stop as the other workers' Ctrl-C does
                    raise KeyboardInterrupt
        while helper.is_alive():
            helper.join(0.1)  # with a timeout: Ctrl-C still reaches this thread
        if errors:
            raise errors[0]
    except BaseException:
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def _reachable(address: str) -> None:
    """Refuse, at once, a Ray address nothing listens on."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        if address != "auto":
            raise CnnscopeError(f"--ray {address}: expected 'local', 'auto', HOST:PORT or ray://HOST:PORT")
        return
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
    except OSError as err:
        raise CnnscopeError(f"--ray {address}: nothing answers there ({err.strerror or err})") from None


def _run_ray(jobs: list[Job], out: Path, address: str, workers: int, done) -> None:
    try:
        import ray  # optional extra: imported only when asked for
    except ImportError:
        raise CnnscopeError("--ray needs Ray: pip install 'cnnscope[ray]'") from None
    if not ray.is_initialized():
        if address == "local":
            ray.init(num_cpus=max(1, workers), include_dashboard=False, log_to_driver=False)
        else:
            _reachable(address)  # Ray itself retries an unreachable address for 20 s, printing as it goes
            try:
                ray.init(address=address, log_to_driver=False)
            except Exception as err:  # Ray raises ConnectionError, ValueError, RuntimeError, ...
                raise CnnscopeError(f"--ray {address}: could not join the cluster ({err})") from None
    remote = ray.remote(num_cpus=1)(run_job)
    # a job whose models run on CUDA asks Ray for a GPU, so units spread over the cluster's GPUs
    refs = {remote.options(num_gpus=gpus_for(job)).remote(str(out), job): job for job in jobs}
    try:
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            job = refs.pop(ready[0])
            done(job, ray.get(ready[0]))
    except BaseException:
        for r in refs:
            ray.cancel(r, force=True)
        raise
