import json
import multiprocessing as mp
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from fairl_lib.artifacts import atomic_write_text, write_json
from fairl_lib.cache import RECEIPT, cached_stage, cached_value, run_stage, stage_key
from fairl_lib.config import make_config, result_settings
from fairl_lib.notebook import write_metrics


def test_stage_key_depends_on_settings_only():
    assert stage_key("s", {"a": 1, "b": (1, 2)}) == stage_key("s", {"b": [1, 2], "a": 1})
    assert stage_key("s", {"a": 1}) != stage_key("s", {"a": 2})
    assert stage_key("s", {"a": 1}) != stage_key("s", {"a": 1}, version="2")
    assert stage_key("s", make_config("smoke").irl) == stage_key("s", make_config("smoke").irl)


def test_rerun_reuses_and_force_recomputes(tmp_path):
    calls = []

    def fn():
        calls.append(1)
        return np.arange(3)

    a = cached_value("toy", {"n": 3}, fn, root=tmp_path, log=lambda _: None)
    b = cached_value("toy", {"n": 3}, fn, root=tmp_path, log=lambda _: None)
    assert len(calls) == 1 and np.array_equal(a, b)
    cached_value("toy", {"n": 3}, fn, root=tmp_path, force=True, log=lambda _: None)
    assert len(calls) == 2
    cached_value("toy", {"n": 4}, fn, root=tmp_path, log=lambda _: None)
    assert len(calls) == 3


def _slow_stage(root):
    def compute(work):
        (work / "step1.txt").write_text("done")
        time.sleep(60)  # killed here
        (work / "step2.txt").write_text("done")

    run_stage("slow", {"k": 1}, compute, root=root, log=lambda _: None)


def test_killed_stage_leaves_no_finished_result_and_resumes(tmp_path):
    proc = mp.get_context("fork").Process(target=_slow_stage, args=(tmp_path,))
    proc.start()
    partial = tmp_path / "slow" / (stage_key("slow", {"k": 1}) + ".partial")
    for _ in range(100):
        if (partial / "step1.txt").exists():
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    final = tmp_path / "slow" / stage_key("slow", {"k": 1})
    assert not final.exists() and (partial / "step1.txt").exists()

    seen = []

    def resume(work):
        seen.append((work / "step1.txt").exists())  # the earlier work is handed back
        (work / "step2.txt").write_text("done")

    out = run_stage("slow", {"k": 1}, resume, root=tmp_path, log=lambda _: None)
    assert seen == [True] and out == final and (final / RECEIPT).exists() and not partial.exists()


def test_failed_compute_leaves_no_finished_result(tmp_path):
    def broken(work):
        (work / "x").write_text("half")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        run_stage("broken", {}, broken, root=tmp_path, log=lambda _: None)
    assert not (tmp_path / "broken" / stage_key("broken", {})).exists()


# --------------------------------------------------------------------------- what a key holds

def _stage_runs(cfg, name: str, settings, calls: list) -> None:
    cached_stage(cfg, name, settings, lambda work: calls.append(name), log=lambda _: None)


@pytest.mark.parametrize("section, knob, science", [
    ("irl", "irl.eval_chunk=7", "irl.margin=0.3"),         # a memory knob of the IRL grids (tests/test_irl_grid.py)
    ("gen", "gen.workers=2", "gen.top_k=5"),                # generation processes (tests/test_models.py)
])
def test_changing_a_speed_knob_reuses_the_stage_changing_science_does_not(results_tmp, section, knob, science):
    """A stage keyed by a whole section (as the IRL grids, pair mix and tuning hold ``cfg.irl``, and the
    sampling stages ``cfg.gen.key()``): a speed knob gives the same key, so the finished stage is reused."""
    calls: list[str] = []
    base, fast, other = (make_config("smoke", overrides=o) for o in ("", knob, science))
    for cfg in (base, fast):
        _stage_runs(cfg, "irl_grid", {"section": getattr(cfg, section)}, calls)
    assert calls == ["irl_grid"]
    _stage_runs(other, "irl_grid", {"section": getattr(other, section)}, calls)
    assert calls == ["irl_grid", "irl_grid"]
    assert base.gen.key() == fast.gen.key() == result_settings(base.gen) and "workers" not in base.gen.key()


def test_stage_keys_never_read_the_run_control():
    from fairl_lib.stages import expert, pairs, rerlhf

    plain = make_config("cpu")
    run = make_config("cpu", force=True, forced=("expert", "pairs"), run_id="r1", notebook="01_rlhf_expert")
    for key_of in (expert.expert_key, lambda c: stage_key("pairs", pairs.pairs_settings(c)),
                   lambda c: rerlhf.stage_keys(c)["ground_truth"]):
        assert key_of(plain) == key_of(run)


def test_atomic_write_and_metrics_are_deterministic(results_tmp):
    cfg = make_config("smoke", seed=1, notebook="00_test")
    p1 = write_metrics(cfg, {"b": np.float32(0.5), "a": [np.int64(1), float("nan")]})
    first = p1.read_bytes()
    write_metrics(cfg, {"a": [1, float("nan")], "b": 0.5})
    assert p1.read_bytes() == first
    assert json.loads(first) == {"a": [1, None], "b": 0.5, "profile": "smoke", "seed": 1}
    assert not [p for p in p1.parent.iterdir() if p.name.startswith(".")]  # no temp files left
    atomic_write_text(results_tmp / "x.txt", "hi")
    assert (results_tmp / "x.txt").read_text() == "hi"
    write_json(results_tmp / "y.json", {"t": (1, 2)})
    assert json.loads((results_tmp / "y.json").read_text()) == {"t": [1, 2]}


# --------------------------------------------------------------------------- FORCE belongs to the owner

def _counting_compute(counter: list, name: str):
    def compute(work):
        counter.append(name)
        (work / "out.txt").write_text(name)
    return compute


def test_force_recomputes_only_the_stages_a_notebook_owns(results_tmp):
    from fairl_lib.cache import cached_stage, stage_root

    calls: list[str] = []
    plain = make_config("smoke")
    up = cached_stage(plain, "expert", {"k": 1}, _counting_compute(calls, "expert"), log=lambda _: None)
    down = cached_stage(plain, "pair_mix", {"k": 1}, _counting_compute(calls, "pair_mix"), log=lambda _: None)
    before = {p: p.stat().st_mtime_ns for p in up.rglob("*")}
    forced = make_config("smoke", force=True, forced=("pair_mix",), run_id="run-a")
    assert forced.forces("pair_mix") and not forced.forces("expert")
    assert cached_stage(forced, "expert", {"k": 1}, _counting_compute(calls, "expert"), log=lambda _: None) == up
    cached_stage(forced, "pair_mix", {"k": 1}, _counting_compute(calls, "pair_mix"), log=lambda _: None)
    assert calls == ["expert", "pair_mix", "pair_mix"]
    assert {p: p.stat().st_mtime_ns for p in up.rglob("*")} == before
    # the same run asking again reuses what it just forced; another run forces again
    cached_stage(forced, "pair_mix", {"k": 1}, _counting_compute(calls, "pair_mix"), log=lambda _: None)
    assert calls.count("pair_mix") == 2
    other = make_config("smoke", force=True, forced=("pair_mix",), run_id="run-b")
    cached_stage(other, "pair_mix", {"k": 1}, _counting_compute(calls, "pair_mix"), log=lambda _: None)
    assert calls.count("pair_mix") == 3 and (down / "out.txt").read_text() == "pair_mix"
    assert stage_root(plain) == up.parent.parent


def test_force_without_ownership_is_off():
    assert make_config("smoke", force=False, forced=("pairs",)).control.forced == ()
    assert not make_config("smoke", force=True).forces("pairs")


def _forced_slow_stage(root: str, log_path: str, run_id: str) -> None:
    def compute(work):
        with open(log_path, "a") as fh:
            fh.write(f"{os.getpid()}\n")
        time.sleep(1.0)
        (work / "result.txt").write_text("done")
    run_stage("shared", {"k": 1}, compute, root=Path(root), force=True, run_id=run_id, log=lambda _: None)


def test_two_processes_asking_for_the_same_forced_stage_compute_it_once(tmp_path):
    """Two workers of one run (same run_id) both force the same stage: one computes while the
    other waits on the stage's lock and then reuses the finished folder; nothing is deleted."""
    log = tmp_path / "computes.log"
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_forced_slow_stage, args=(str(tmp_path), str(log), "run-1")) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    assert len(log.read_text().split()) == 1
    final = tmp_path / "shared" / stage_key("shared", {"k": 1})
    assert (final / "result.txt").read_text() == "done" and (final / RECEIPT).exists()
    assert not final.with_name(final.name + ".partial").exists()


def test_log_lines_name_folders_relative_to_the_results_folder(tmp_path):
    """The cache's log lines reach the executed notebooks and the published site: they must not carry
    the machine's absolute paths, only ``stages/<name>/<key>`` under the run's results folder."""
    logs = []
    root = tmp_path / "cpu" / "stages"
    run_stage("toy", {"n": 1}, lambda work: (work / "x").write_text("1"), root=root, log=logs.append)
    run_stage("toy", {"n": 1}, lambda work: None, root=root, log=logs.append)
    key = stage_key("toy", {"n": 1})
    assert logs == [f"[cache] toy: computing in stages/toy/{key}.partial", f"[cache] toy: reusing stages/toy/{key}"]
    assert not any(str(tmp_path) in line for line in logs)
