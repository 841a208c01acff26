"""The job engine under the verbs: a run resumed after losing a job, a run on 2 worker processes and a run on
a local Ray cluster write byte-identical files to a plain run; finished jobs are not redone; an interrupted
job is never recorded as done."""

import json
import os
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from cnnscope.cli import main
from cnnscope.errors import CnnscopeError
from cnnscope.jobs import Job, Result, execute
from cnnscope.store import finished

VERBS = {
    "invert": ["invert", "sample:chelsea", "--layer", "stem,stage1", "--size", "64", "--iters", "10"],
    "saliency": ["saliency", "sample:chelsea", "sample:coffee", "--layer", "stage2", "--features"],
    "equivariance": ["equivariance", "--transform", "hflip", "--quick", "--limit", "8"],
    "stitch": ["stitch", "--quick", "--limit", "8"],
}


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _same_files(a: Path, b: Path) -> None:
    fa, fb = _files(a), _files(b)
    assert sorted(fa) == sorted(fb)
    assert [k for k in fa if fa[k] != fb[k]] == []


def _records(root: Path) -> list[Path]:
    """The job records (JSON with settings, results and files), not the runs' summaries."""
    return [p for p in sorted(root.rglob("*.json")) if {"settings", "results", "files"} <= set(json.loads(
        p.read_text()))]


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """Each verb run once, in this process, one job after the other."""
    runs = {}
    for verb, args in VERBS.items():
        out = tmp_path_factory.mktemp(f"plain-{verb}")
        assert main([*args, "--out", str(out)]) == 0
        runs[verb] = out
    return runs


@pytest.mark.parametrize("verb", list(VERBS))
def test_jobs_write_what_they_computed(plain, verb):
    out = plain[verb]
    records = _records(out)
    assert len(records) >= 2, "every verb here is several jobs"
    for record in records:
        data = json.loads(record.read_text())
        assert data["settings"]["job"] and all((out / f).is_file() for f in data["files"])
        assert "seconds" not in json.dumps(data["results"])  # timings would make reruns differ
    if verb == "invert":
        errors = [json.loads(r.read_text())["results"]["normalised_error"][0] for r in records]
        assert all(0 < e < 1 for e in errors)
    if verb == "saliency":
        from safetensors.torch import load_file

        maps = load_file(str(out / "saliency_chelsea.safetensors"))
        assert set(maps) == {f"stage2 features|{m}" for m in ("deconvnet", "salinet", "desalinet")}
        assert all(v.shape == (3, 224, 224) and v.abs().sum() > 0 for v in maps.values())
    if verb == "equivariance":
        data = json.loads((out / "equivariance_efficientnet_lite0_hflip.json").read_text())
        assert [r["layer"] for r in data["rows"]] == ["stem", "stage2"]
        assert all(0 <= r["learned"] <= 1 for r in data["rows"])
    if verb == "stitch":
        data = json.loads((out / "stitch_efficientnet_lite0_efficientnet_lite1.json").read_text())
        assert [t["layer"] for t in data["table"]] == ["A alone", "B alone", "stem", "stage2"]


@pytest.mark.parametrize("verb", list(VERBS))
def test_two_workers_write_the_same_bytes(plain, verb, tmp_path):
    assert main([*VERBS[verb], "--out", str(tmp_path), "--workers", "2"]) == 0
    _same_files(tmp_path, plain[verb])


@pytest.mark.parametrize("verb", list(VERBS))
def test_resume_redoes_only_the_missing_job(plain, verb, tmp_path):
    assert main([*VERBS[verb], "--out", str(tmp_path)]) == 0
    records = _records(tmp_path)
    lost = records[-1]
    lost.unlink()  # as if the run had been killed before this job finished
    kept = {p: p.stat().st_mtime_ns for p in records[:-1]}
    assert main([*VERBS[verb], "--out", str(tmp_path)]) == 0
    assert lost.is_file()
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items()), "finished jobs were redone"
    _same_files(tmp_path, plain[verb])


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    try:  # a machine that cannot start a local cluster is not a failure of ours
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    except Exception as err:
        pytest.skip(f"Ray could not start a local cluster here: {err}")
    yield
    ray.shutdown()


@pytest.mark.parametrize("verb", list(VERBS))
@pytest.mark.xdist_group("ray")  # one local Ray cluster at a time
def test_ray_local_writes_the_same_bytes(plain, verb, tmp_path, ray_cluster):
    assert main([*VERBS[verb], "--out", str(tmp_path), "--ray", "local"]) == 0
    _same_files(tmp_path, plain[verb])


# --------------------------------------------------------------------------- the engine on its own
@dataclass
class CountResult(Result):
    value: float
    noise: torch.Tensor = field(metadata={"json": False})


@dataclass(frozen=True)
class NoiseJob(Job):
    """Draws from torch's global generator: the engine must seed it from the key."""

    key: str
    scale: float = 1.0
    stop: bool = False
    kind = "noise"

    def models(self):
        return ()

    def compute(self) -> CountResult:
        if self.stop:
            raise KeyboardInterrupt
        noise = torch.randn(4) * self.scale
        return CountResult(float(noise.sum()), noise)

    def write(self, out: Path, result: CountResult) -> list[str]:
        (out / f"{self.key}.txt").parent.mkdir(parents=True, exist_ok=True)
        (out / f"{self.key}.txt").write_text(" ".join(f"{v:.6f}" for v in result.noise.tolist()))
        return [f"{self.key}.txt"]


def test_engine_seeds_by_key_and_reuses_by_settings(tmp_path, capsys):
    first = execute([NoiseJob("a"), NoiseJob("b")], tmp_path, progress=False)
    assert first.computed == 2 and first.outcomes[0].results["value"] != first.outcomes[1].results["value"]
    again = execute([NoiseJob("b"), NoiseJob("a")], tmp_path / "other", progress=False)  # order does not matter
    assert {o.job.key: o.results for o in again.outcomes} == {o.job.key: o.results for o in first.outcomes}
    reused = execute([NoiseJob("a"), NoiseJob("b", scale=2.0)], tmp_path, progress=False)
    assert [o.reused for o in reused.outcomes] == [True, False]  # changed settings: computed again
    said = capsys.readouterr().out  # and the user is told which setting changed, and that files are replaced
    assert f"jobs: redoing jobs in {tmp_path} made with other settings (scale: 1 job); their files are replaced" in said
    assert reused.outcomes[1].results["value"] == pytest.approx(2 * first.outcomes[1].results["value"])


def test_interrupted_job_is_not_recorded(tmp_path):
    run = execute([NoiseJob("a"), NoiseJob("b", stop=True), NoiseJob("c")], tmp_path, progress=False)
    assert run.interrupted and [o.job.key for o in run.outcomes] == ["a"]
    assert finished(tmp_path, "a", NoiseJob("a").settings()) is not None
    assert not (tmp_path / "b.json").exists() and not (tmp_path / "c.json").exists()
    assert not list(tmp_path.rglob("*.part"))


def test_duplicate_keys_are_refused(tmp_path):
    from cnnscope.errors import CnnscopeError

    with pytest.raises(CnnscopeError, match="same files"):
        execute([NoiseJob("a"), NoiseJob("a", scale=2.0)], tmp_path, progress=False)


def test_the_documented_new_verb_runs_through_both_doors(tmp_path, capsys, monkeypatch):
    """The new verb of the architecture page (docs/development/architecture.md): its job, run function and
    declaration, as written, give a CLI verb (help, --json, resume) and a Python function that plan the same job."""
    import dataclasses
    import re
    import sys
    import types

    import cnnscope.api
    import cnnscope.cli
    from cnnscope import verbs
    from cnnscope.images import load_image
    from cnnscope.jobs import spec_of
    from cnnscope.layers import capture, resolve
    from cnnscope.models import ModelSpec
    from cnnscope.progress import table
    from cnnscope.requests import answer, load, out_dir, picture
    from cnnscope.store import slug

    text = (Path(__file__).resolve().parents[1] / "docs" / "development" / "architecture.md").read_text()
    code = re.search(r"\*\*A new verb\*\*.*?```python\n(.*?)```", text, re.S).group(1)
    scope = {"dataclass": dataclass, "Result": Result, "Job": Job, "ModelSpec": ModelSpec, "capture": capture,
             "load_image": load_image, "resolve": resolve, "execute": execute, "spec_of": spec_of, "slug": slug,
             "table": table, "answer": answer, "load": load, "out_dir": out_dir, "picture": picture,
             **{n: getattr(verbs, n) for n in ("Verb", "Option", "Picture", "Text", "IMAGE_HELP", "model_options",
                                               "out_option", "run_options", "Request", "Answer")}}
    exec(code, scope)
    module = types.ModuleType("readme_energy")
    module.energy = scope["energy"]
    monkeypatch.setitem(sys.modules, "readme_energy", module)
    verb = dataclasses.replace(scope["ENERGY"], run="readme_energy:energy")
    monkeypatch.setattr(cnnscope.cli, "registry", lambda: {**verbs.registry(), "energy": verb})

    assert cnnscope.cli.main(["energy", "sample:coffee", "--layer", "stage2", "--out", str(tmp_path), "--json"]) == 0
    energy = json.loads(capsys.readouterr().out)["energy"]
    assert len(energy) == 24 and all(e >= 0 for e in energy) and max(energy) > 0
    assert cnnscope.cli.main(["energy", "sample:coffee", "--layer", "stage2", "--out", str(tmp_path), "-q"]) == 0
    assert json.loads((tmp_path / "energy_efficientnet_lite0_stage2.json").read_text())["results"]["energy"] == energy
    python = cnnscope.api.function(verb)  # the API function made from the same declaration
    assert python("efficientnet_lite0", "sample:coffee", "stage2").energy == pytest.approx(energy)
    assert "layer : str, default 'stage4'" in python.__doc__


@dataclass
class HeavyResult(Result):
    rss_mb: float  # resident memory when the job ran
    maps: torch.Tensor = field(metadata={"json": False})  # 2 MB of tensors, as a saliency job's maps


@dataclass(frozen=True)
class HeavyJob(Job):
    key: str
    kind = "heavy"

    def models(self):
        return ()

    def compute(self) -> HeavyResult:
        status = Path("/proc/self/status").read_text()
        rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")) / 1024
        return HeavyResult(rss, torch.ones(512, 1024))

    def write(self, out: Path, result: HeavyResult) -> list[str]:
        return []


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads resident memory from /proc")
def test_memory_does_not_grow_with_the_number_of_jobs(tmp_path):
    """A run keeps each job's numbers, never its tensors: 1,200 jobs of 2 MB each would add 2.4 GB if it did
    (it kept them before: ~2 MB per saliency job). Resident memory at the end is within 50 MB of a quarter in."""
    n = 1200
    run = execute([HeavyJob(f"j{i:04d}") for i in range(n)], tmp_path, progress=False)
    rss = [o.results["rss_mb"] for o in run.outcomes]
    assert run.computed == n and rss[-1] - rss[n // 4] < 50


@dataclass
class PidResult(Result):
    pid: int
    sigint_blocked: bool = False


@dataclass(frozen=True)
class WhereJob(Job):
    """Says which process computed it (and fails when told to)."""

    key: str
    fail: bool = False
    kind = "where"

    def models(self):
        return ()

    def compute(self) -> PidResult:
        if self.fail:
            raise CnnscopeError(f"{self.key} cannot be computed")
        return PidResult(os.getpid(), signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, set()))

    def write(self, out: Path, result: PidResult) -> list[str]:
        return []


def test_a_worker_lets_ctrl_c_in_for_its_jobs_only(tmp_path):
    """Spawned workers are born with SIGINT blocked (the thread that starts them blocks it), so a Ctrl-C while
    one imports torch or waits for work prints no traceback (CI once caught one); a job unblocks it, so a
    Ctrl-C during the job interrupts its solver, and blocks it again after."""
    from cnnscope.jobs.engine import _worker_job

    seen = []

    def as_a_worker():
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})  # the mask a worker is born with
        results, _, _ = _worker_job(str(tmp_path), WhereJob("w"))
        seen.append((results["sigint_blocked"], signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, set())))

    thread = threading.Thread(target=as_a_worker)
    thread.start()
    thread.join()
    assert seen == [(False, True)]


def test_two_workers_are_this_process_and_one_more(tmp_path):
    run = execute([WhereJob(f"j{i}") for i in range(6)], tmp_path / "ok", workers=2, progress=False)
    assert run.computed == 6 and not run.interrupted
    assert os.getpid() in {o.results["pid"] for o in run.outcomes}  # this process works too: no idle parent
    assert not any(o.results["sigint_blocked"] for o in run.outcomes)  # a job anywhere can be interrupted
    with pytest.raises(CnnscopeError, match="j3 cannot be computed"):  # an error in either process reaches here
        execute([WhereJob(f"j{i}", fail=i == 3) for i in range(6)], tmp_path / "bad", workers=2, progress=False)


@dataclass(frozen=True)
class CostlyJob(WhereJob):
    hours: float = 1.0

    @property
    def cost(self) -> float:
        return self.hours


def test_workers_start_the_longest_jobs_first(tmp_path, monkeypatch):
    """A long job taken last would run alone while the other workers idle: the engine hands jobs out by their
    declared cost, longest first (ties keep their order), and the run still lists them in the order asked."""
    from cnnscope.jobs import engine

    handed = []
    real = engine._run_processes
    monkeypatch.setattr(engine, "_run_processes", lambda jobs, *a: handed.extend(j.key for j in jobs) or
                        real(jobs, *a))
    jobs = [CostlyJob("a", hours=1), CostlyJob("b", hours=5), CostlyJob("c", hours=1), CostlyJob("d", hours=9)]
    run = execute(jobs, tmp_path, workers=2, progress=False)
    assert handed == ["d", "b", "a", "c"]
    assert [o.job.key for o in run.outcomes] == ["a", "b", "c", "d"]
