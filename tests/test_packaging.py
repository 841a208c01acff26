"""The wheel: `pip wheel .` gives a package that installs into a clean venv and runs `cnnscope demo --quick`
from outside the source tree (package data, entry point, no reliance on the checkout); piped output has no
carriage returns."""

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_installs_in_a_clean_venv_and_runs_the_demo(tmp_path):
    dist = tmp_path / "dist"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist),
                    str(ROOT)], check=True, capture_output=True, cwd=tmp_path, env=env)
    (wheel,) = dist.glob("cnnscope-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    # (run from tmp_path: in the checkout, pip would see its cnnscope.egg-info and install nothing)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True,
                   capture_output=True, cwd=tmp_path, env=env)
    # the dependencies (torch is 1 GB) come from this environment's site-packages as a plain path: its .pth
    # files (the editable install of the checkout among them) are not processed, so cnnscope is the wheel's
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "deps_from_ci.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    where = subprocess.run([str(python), "-c", "import cnnscope; print(cnnscope.__file__)"], check=True,
                           capture_output=True, text=True, cwd=tmp_path, env=env).stdout.strip()
    assert where.startswith(site), where  # imported from the wheel, not from the checkout
    out = tmp_path / "demo"
    res = subprocess.run([str(venv / "bin" / "cnnscope"), "demo", "--quick", "--out", str(out)], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "\r" not in res.stdout + res.stderr  # piped: plain lines, no progress-bar redraws
    assert "demo: 1/" in res.stderr and f"wrote {out / 'index.html'}" in res.stdout  # one line per section
    html = (out / "index.html").read_text()
    for name in ["chelsea_input.png", "coffee_top5.png", "layers.json", "demo.json"]:
        assert (out / name).stat().st_size > 0
    assert 'src="chelsea_top5.png"' in html and "stage7" in html
    assert 'src="preimage/invert_chelsea_grid.png"' in html
    assert (out / "preimage" / "invert_chelsea_grid.png").stat().st_size > 0
    assert 'src="backprop/saliency_chelsea_grid.png"' in html
    assert 'src="equivalence/cka.png"' in html
    assert 'src="style/texture_gravel.png"' in html and (out / "style" / "style_gravel.png").is_file()
    demo = json.loads((out / "demo.json").read_text())
    assert demo["predictions"]["sample:coffee"][0]["name"] == "espresso"  # the class names are package data
