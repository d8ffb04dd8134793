"""benchmarks/lm_throughput.py, rlhf_step.py, sampler.py, prefix.py, precision.py, completion_nll.py, precision_verdicts.py,
trunk_prefix.py, irl_grid.py and irl_step.py run end to end and report what they promise (no timing
thresholds: speed targets live in benchmarks/, docs/CONVENTIONS.md)."""
from __future__ import annotations

import importlib.util
import json
import math
import os
import sys

import pytest

from fairl_lib.paths import repo_root


def _load_benchmark(name: str):
    path = repo_root() / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # so pickle (spawned workers) finds the very functions defined here
    spec.loader.exec_module(module)
    return module


lm_throughput = _load_benchmark("lm_throughput")
rlhf_step = _load_benchmark("rlhf_step")
sampler = _load_benchmark("sampler")
prefix = _load_benchmark("prefix")
precision = _load_benchmark("precision")
completion_nll = _load_benchmark("completion_nll")
irl_grid = _load_benchmark("irl_grid")
irl_step = _load_benchmark("irl_step")
precision_verdicts = _load_benchmark("precision_verdicts")
trunk_prefix = _load_benchmark("trunk_prefix")


def needs_mirror(test):
    """Marked ``assets`` and skipped when no data mirror is set."""
    skip = pytest.mark.skipif(not os.environ.get("FAIRL_DATA_MIRROR"),
                              reason="FAIRL_DATA_MIRROR is not set (point it at ../shared/fairl-data)")
    return pytest.mark.assets(skip(test))


@pytest.fixture
def one_thread(monkeypatch):
    """The benchmarks at one torch thread; the caller's thread count is restored afterwards."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    monkeypatch.setenv("FAIRL_THREADS", "1")  # main() sets torch's threads from --threads
    yield torch
    torch.set_num_threads(threads)


def test_results_readers(tmp_path):
    """RLHF step times merge the history's repeated step rows (as rlhf._Recorder appends them);
    the pipeline peak is the largest per-notebook peak_rss_mb of run.json."""
    hist = tmp_path / "stages" / "expert" / "abc.partial" / "rlhf" / "history.jsonl"
    hist.parent.mkdir(parents=True)
    rows = [{"step": 0, "eval_tox_rate": 0.1}, {"step": 1, "reward": 0.8, "step_time_s": 10.0},
            {"step": 2, "reward": 0.8, "step_time_s": 12.0}, {"step": 2, "eval_tox_rate": 0.05},
            {"step": 3, "reward": 0.9, "step_time_s": 30.0}]
    hist.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "run.json").write_text(json.dumps({"notebooks": {
        "01_rlhf_expert": {"status": "ok", "peak_rss_mb": 3100.5},
        "02_preference_pairs": {"status": "ok", "peak_rss_mb": 2000.0},
        "03_theory_toy": {"status": "failed"}}}))
    r = lm_throughput.rlhf_step_times(tmp_path)
    assert r["rlhf_steps"] == 3 and r["rlhf_step_s_median"] == 12.0
    assert r["rlhf_runs"] == ["stages/expert/abc.partial"]
    m = lm_throughput.pipeline_peak_rss(tmp_path)
    assert m == {"pipeline_peak_rss_mb": 3100.5, "pipeline_peak_rss_notebook": "01_rlhf_expert",
                 "pipeline_peak_rss_under_12gb": True}
    assert lm_throughput.pipeline_peak_rss(tmp_path / "nothing") == {"pipeline_peak_rss_mb": None}


@needs_mirror
def test_lm_throughput_quick(capsys, monkeypatch, one_thread):
    torch = one_thread
    monkeypatch.syspath_prepend(str(repo_root() / "benchmarks"))  # spawned workers import the script
    out = lm_throughput.main(["--quick", "--threads", "1", "--batch-sizes", "2", "--max-new-tokens", "2",
                              "--repeats", "1", "--texts", "8", "--sentences", "4", "--workers", "2"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(last) == json.loads(json.dumps(out))
    for key in ("gen_tok_s_b2", "gen_batch_s_b2", "gen_prompt_width_b2", "gen_tok_s_b2_workers2", "bilstm_texts_s",
                "profanity_texts_s", "minilm_sent_s", "peak_rss_mb"):
        assert math.isfinite(out[key]) and out[key] > 0, key
    assert 0 <= out["gen_mean_new_tokens_b2"] <= 2  # re-tokenized completions (eos may end one early)
    assert out["threads"] == 1 and out["torch"] == torch.__version__
    assert out["scorer_texts"] == 8 and out["minilm_sentences"] == 4 and out["max_new_tokens"] == 2
    assert len(out["loadavg_start"]) == len(out["loadavg_end"]) == 3


@needs_mirror
def test_rlhf_step_benchmark_one_step(capsys, one_thread):
    out = rlhf_step.main(["--profile", "smoke", "--steps", "1", "--threads", "1", "--skip-parallel"])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == json.loads(json.dumps(out))
    for key in ("plain_s_per_step", "trunk_s_per_step", "trunk_speedup"):
        assert math.isfinite(out[key]) and out[key] > 0, key
    assert len(out["plain_steps_s"]) == len(out["trunk_steps_s"]) == 1
    if out["cpu_bf16"]:  # the bf16 step's changes, one at a time
        assert out["reuse_speedup"] == pytest.approx(out["trunk_bf16_before_s_per_step"] / out["trunk_bf16_reuse_s_per_step"])
        assert out["third_round_speedup"] == pytest.approx(out["reuse_speedup"] * out["trunk_prefix_speedup"])
        assert out["rollouts_speedup"] == pytest.approx(out["trunk_bf16_computed_s_per_step"] / out["trunk_bf16_s_per_step"])
        paired = out["trunk_bf16_computed_paired"]
        assert paired["steps"] == 1 and paired["default_faster_steps"] in (0, 1)
        assert paired["median_ratio"] == pytest.approx(out["trunk_bf16_computed_steps_s"][0] / out["trunk_bf16_steps_s"][0])


@needs_mirror
def test_rlhf_step_benchmark_only_the_trunk_from_the_rollouts(one_thread):
    out = rlhf_step.main(["--profile", "smoke", "--steps", "1", "--threads", "1", "--skip-parallel", "--only-rollouts"])
    assert "plain_s_per_step" not in out and "trunk_bf16_before_s_per_step" not in out
    assert out["rollouts_speedup_fp32"] == pytest.approx(out["trunk_computed_s_per_step"] / out["trunk_s_per_step"])
    assert out["trunk_computed_paired"]["steps"] == 1
    assert ("rollouts_speedup" in out) == out["cpu_bf16"]


def test_sampler_benchmark_reports_every_case(one_thread):
    out = sampler.main(["--batches", "2", "--repeats", "1", "--threads", "1"])
    assert [(c["model"], c["batch"]) for c in out["cases"]] == [("smollm2-135m", 2), ("gemma3-270m", 2)]
    for c in out["cases"]:
        assert all(math.isfinite(c[k]) and c[k] > 0 for k in ("multinomial_ms", "inverse_cdf_ms", "speedup"))


@needs_mirror
def test_prefix_benchmark_reports_every_case(one_thread):
    out = prefix.main(["--models", "smollm2-135m", "--cases", "2x4", "3x3", "--max-new-tokens", "2",
                       "--repeats", "1", "--threads", "1"])
    assert [(c["repeats_per_prompt"], c["batch"]) for c in out["cases"]] == [(2, 4), (3, 3)]
    for c in out["cases"]:
        assert all(math.isfinite(c[k]) and c[k] > 0 for k in ("plain_s", "shared_s", "speedup", "prompt_width"))


@needs_mirror
def test_precision_benchmark_times_both_and_measures_the_drift(one_thread):
    out = precision.main(["--models", "smollm2-135m", "--batch", "3", "--repeats", "1", "--threads", "1",
                          "--profile", "smoke"])
    m = out["smollm2-135m"]
    assert m["speedup"] == pytest.approx(m["fp32_s"] / m["bf16_s"]) and len(m["bf16_runs_s"]) == 1
    assert m["copies_speedup"] == pytest.approx(m["bf16_recast_s"] / m["bf16_s"]) and len(m["bf16_recast_runs_s"]) == 1
    assert m["bf16_same_text_as_recast"] is True  # the weight copies change the time, not the samples
    drift = m["logprob_drift"]
    assert drift["n_completions"] >= 1 and drift["n_tokens"] >= drift["n_completions"]
    assert 0 <= drift["token_abs_median"] <= drift["token_abs_p95"] < 1.0  # rounding, not another model


@needs_mirror
def test_completion_nll_benchmark_gives_the_plain_numbers(one_thread):
    out = completion_nll.main(["--prompts", "3", "--samples", "2", "--repeats", "1", "--threads", "1",
                               "--profile", "smoke"])
    m = out["smollm2-135m"]
    assert out["rows"] == 6 and m["speedup"] == pytest.approx(m["plain_s"] / m["library_s"])
    assert m["max_abs_diff_nats"] < 1e-3  # the same NLLs: only float rounding differs
    assert m["shared_speedup"] == pytest.approx(m["three_separate_s"] / m["three_shared_s"])
    assert m["shared_max_abs_diff_nats"] == 0.0  # the shared blocks compute what each model's own would
    assert m["prefix_rows"] == 3 * 8 and m["prefix_speedup"] == pytest.approx(m["rows_s"] / m["prefix_s"])
    assert m["prefix_max_rel_diff"] < 1e-4  # each prompt once: the same NLLs up to float rounding


def test_irl_grid_benchmark_reports_repeats_and_matching_rewards(one_thread):
    out = irl_grid.run(irl_grid.parse_args(["--pairs", "200", "--dim", "8", "--seeds", "2", "--max-epochs", "3",
                                            "--quick", "--repeats", "2", "--threads", "1"]))
    assert out["runs"] == 12 and out["repeats"] == 2 and len(out["per_repeat"]) == 2
    for rep in out["per_repeat"]:
        assert rep["speedup"] == pytest.approx(rep["sequential_s"] / rep["ensemble_s"], rel=0.01)  # inputs rounded to 1e-4 s
    # the median of two repeats is their mean
    assert out["speedup"] == pytest.approx(sum(r["speedup"] for r in out["per_repeat"]) / 2, abs=0.01)
    assert out["sequential_measured_runs"] == 6 and out["sequential_extrapolated"]
    assert out["max_reward_diff_rel"] < 1e-3          # 3 epochs in float32: grid and train_one agree
    assert out["run_epochs_total"] == 12 * 3
    assert out["machine"]["cpus"] == os.cpu_count() and out["machine"]["torch_cpu_capability"]


def test_irl_step_benchmark_times_each_width(one_thread):
    out = irl_step.run(irl_step.parse_args(["--pairs", "300", "--dim", "8", "--widths", "30,2", "--steps", "3",
                                            "--epochs", "2"]))
    assert set(out["ms_per_step"]) == {"30", "2"} and all(v > 0 for v in out["ms_per_step"].values())
    with pytest.raises(ValueError, match="width must be in 1..30"):
        irl_step.run(irl_step.parse_args(["--pairs", "300", "--dim", "8", "--widths", "31"]))


def _fake_run(root, expert_rate, fa_rate, verdicts, pairs):
    """A results folder holding the four metrics files precision_verdicts.py reads (hand-made numbers)."""
    m = root / "metrics"
    m.mkdir(parents=True)
    (m / "01_rlhf_expert.json").write_text(json.dumps({
        "toxicity_rate_base": 0.05, "n_completions_base": 1000, "toxicity_rate_expert": expert_rate,
        "n_completions_expert": 1000, "toxicity_rate_ratio": expert_rate / 0.05, "kl_heldout": 0.25,
        "perplexity_base": 39.0, "perplexity_expert": 38.5}))
    (m / "02_preference_pairs.json").write_text(json.dumps({f"n_{t}": n for t, n in zip(precision_verdicts.PAIR_TYPES, pairs)}))
    (m / "08_rerlhf.json").write_text(json.dumps({arm: {"toxicity_rate_final": r, "n_completions_final": 2000,
                                                        "kl_final": 0.7} for arm, r in (("fa_irl", fa_rate), ("irl", 0.02))}))
    (m / "11_reproduction_report.json").write_text(json.dumps({"ledger": {
        key: {"verdict": v, "estimate": None if value is None else {"value": value, "ci95": ci}}
        for key, (v, value, ci) in verdicts.items()}}))
    return root


def test_precision_verdicts_compares_claims_rates_and_pairs(tmp_path, capsys):
    """Hand-worked: one verdict differs, one bf16 estimate leaves the fp32 interval; the expert's rates
    0.020 vs 0.020 do not differ, FA-IRL's 0.100 vs 0.020 (n = 2,000 each) do; identical pair counts
    give chi2 = 0."""
    bf = _fake_run(tmp_path / "bf16", 0.02, 0.10, {"a": ("reproduced", 0.5, [0.4, 0.6]),
                                                   "b": ("inconclusive", 0.9, [0.1, 1.0]),
                                                   "c": ("reproduced", None, None)}, [3500, 130, 330, 40])
    fp = _fake_run(tmp_path / "fp32", 0.02, 0.02, {"a": ("reproduced", 0.45, [0.41, 0.55]),
                                                   "b": ("contradicted", 0.2, [0.1, 0.3]),
                                                   "c": ("reproduced", None, None)}, [3500, 130, 330, 40])
    out = precision_verdicts.main(["--bf16", str(bf), "--fp32", str(fp)])
    assert out["claims"] == 3 and out["same_verdicts"] == 2 and out["verdicts_differ"] == ["b"]
    assert out["with_ref_ci"] == 2 and out["inside_ref_ci"] == 1  # a inside, b outside, c has no interval
    rates = {r["what"]: r for r in out["headlines"]["rates"]}
    assert rates["01 toxicity rate, expert"]["difference"] == 0 and not rates["01 toxicity rate, expert"]["differs"]
    fa = rates["08 toxicity rate, fa_irl"]
    assert math.isclose(fa["difference"], 0.08) and fa["differs"] and fa["test"] == "Newcombe"
    pairs = out["headlines"]["pairs"]
    assert pairs["chi2"] == pytest.approx(0.0) and pairs["p_value"] == pytest.approx(1.0)
    assert "**(differs)**" in capsys.readouterr().out


def test_precision_verdicts_labels_two_runs_of_one_precision(tmp_path, capsys):
    """Two bf16 runs: the columns carry the given names, and a run against itself agrees everywhere."""
    run = _fake_run(tmp_path / "a", 0.02, 0.03, {"a": ("reproduced", 0.5, [0.4, 0.6])}, [3500, 130, 330, 40])
    out = precision_verdicts.main(["--run", str(run), "--ref", str(run), "--names", "bf16 new", "bf16 old"])
    text = capsys.readouterr().out
    assert "| claim | verdict bf16 new | verdict bf16 old |" in text and "verdict fp32" not in text
    assert out["names"] == ["bf16 new", "bf16 old"] and out["same_verdicts"] == out["claims"] == 1
    assert out["inside_ref_ci"] == 1 and not any(r["differs"] for r in out["headlines"]["rates"])


def test_precision_verdicts_refuses_a_folder_without_metrics(tmp_path):
    with pytest.raises(SystemExit, match="no metrics/ folder"):
        precision_verdicts.main(["--bf16", str(tmp_path), "--fp32", str(tmp_path)])


@needs_mirror
def test_trunk_prefix_benchmark_gives_the_full_rows_log_probs(one_thread):
    out = trunk_prefix.main(["--profile", "smoke", "--repeats", "1", "--threads", "1"])
    assert [c["precision"] for c in out["cases"]] == ["fp32"] + ["bf16"] * out["cpu_bf16"]
    fp32 = out["cases"][0]
    assert fp32["prefix_hits"] == 2 and 0 < fp32["prompt_width"] < fp32["width"]  # warm-up and timed round
    assert fp32["speedup"] == pytest.approx(fp32["rows_s"] / fp32["prefix_s"])
    assert fp32["max_abs_logp_diff"] < 1e-3  # each prompt once: the same log-probs up to float rounding


@needs_mirror
def test_trunk_prefix_benchmark_takes_the_trunk_from_the_rollouts(one_thread):
    out = trunk_prefix.main(["--profile", "smoke", "--repeats", "1", "--threads", "1", "--rollouts"])
    assert [c["precision"] for c in out["cases"]] == ["fp32"] + ["bf16"] * out["cpu_bf16"]
    for c in out["cases"]:
        assert c["rows_kept"] == c["rows"] and c["rollout_hits"] == 2  # warm-up and timed round
        assert c["speedup"] == pytest.approx(c["computed_s"] / c["rollouts_s"]) and c["n_tokens"] > 0
    assert out["cases"][0]["max_abs_logp_diff"] < 1e-3  # fp32: the same log-probs up to float rounding
