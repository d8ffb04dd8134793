"""The whole pipeline on the smoke profile, and the runner's contract.

The smoke run happens once per session (module fixture) into a temporary FAIRL_RESULTS; tests then
assert on the metrics files the notebooks write, as a reader would.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from fairl_lib.paths import repo_root
from fairl_lib.pipeline import declared_parameters, discover, promised_outputs, publish_report, summary_table

ROOT = Path(__file__).resolve().parents[1]
BOOKS = discover()


def run_pipeline(results: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "FAIRL_RESULTS": str(results)}
    return subprocess.run([sys.executable, "-m", "fairl_lib.pipeline", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True)


@pytest.mark.parametrize("book", BOOKS, ids=lambda p: p.stem)
def test_notebook_contract(book):
    """Every notebook: a parameters cell with the standard scalars, no committed outputs, promises declared."""
    assert {"PROFILE", "SEED", "FORCE", "OVERRIDES"} <= declared_parameters(book)
    nb = nbformat.read(book, as_version=4)
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), "strip outputs (nbstripout)"
    assert promised_outputs(book)["metrics"] == [book.stem]
    assert any(f"setup_notebook(\"{book.stem}\"" in c.source for c in nb.cells)


def test_unknown_profile_and_notebook_are_refused(tmp_path):
    out = run_pipeline(tmp_path, "cpuu")
    assert out.returncode == 2 and "Unknown profile 'cpuu'" in out.stderr and "smoke" in out.stderr
    out = run_pipeline(tmp_path, "smoke", "--only", "99")
    assert out.returncode == 2 and "no such notebook" in out.stderr


def test_publish_report_copies_beside_figures(tmp_path, monkeypatch):
    monkeypatch.setenv("FAIRL_ROOT", str(tmp_path / "repo"))
    monkeypatch.setenv("FAIRL_RESULTS", str(tmp_path / "results"))
    (tmp_path / "repo").mkdir()
    assert publish_report("cpu") is None  # nothing to publish before notebook 11 ran
    for profile, name in (("cpu", "REPORT.md"), ("paper", "REPORT-paper.md")):
        (tmp_path / "results" / profile).mkdir(parents=True)
        (tmp_path / "results" / profile / "REPORT.md").write_text(f"# {profile}\n![f](figures/f.png)\n")
        assert publish_report(profile) == tmp_path / "repo" / name
        assert (tmp_path / "repo" / name).read_text().startswith(f"# {profile}")


# a run.json record made by hand: two finished notebooks and one that failed (no peak memory)
HAND_RUN = {"profile": "cpu", "status": "failed in 03_theory_toy.ipynb", "notebooks": {
    "02_preference_pairs": {"status": "ok", "seconds": 649.4, "peak_rss_mb": 2048.3},
    "01_rlhf_expert": {"status": "ok", "seconds": 1218.0, "peak_rss_mb": 3500.6},
    "03_theory_toy": {"status": "failed", "seconds": 12.5},
}}


def table_rows(table: str) -> dict[str, list[str]]:
    lines = table.splitlines()
    assert lines[0].split("|")[1:-1] == [" notebook ", " status ", " seconds ", " minutes ", " peak memory (MB) "]
    return {cells[0]: cells[1:] for cells in ([c.strip() for c in line.split("|")[1:-1]] for line in lines[2:])}


def test_summary_table_rows_and_total():
    rows = table_rows(summary_table(HAND_RUN))
    assert list(rows) == ["01_rlhf_expert", "02_preference_pairs", "03_theory_toy", "**total**"]
    assert rows["01_rlhf_expert"] == ["ok", "1,218", "20.3", "3,501"]
    assert rows["03_theory_toy"] == ["failed", "12", "0.2", "-"]  # the failed notebook shows its status
    status, seconds, minutes, peak = rows["**total**"]
    total = sum(e["seconds"] for e in HAND_RUN["notebooks"].values())
    assert seconds == f"**{total:,.0f}**" == "**1,880**"  # the total row is the sum of the notebooks
    assert minutes == f"**{total / 60:.1f}**"
    assert peak == "3,501" and status == "failed in 03_theory_toy.ipynb"


def test_summary_table_names_the_machine_and_precision():
    run = {**HAND_RUN, "machine": {"cpu_model": "AMD EPYC", "cpus": 2, "bf16": True},
           "precision": {"gen": "bf16", "rlhf": "bf16"}}
    table, _, note = summary_table(run).partition("\n\n")
    assert table == summary_table(HAND_RUN)  # the rows do not change
    assert note == "Machine: AMD EPYC, 2 cores, native bf16: yes; precision of the last run: generation bf16, RLHF bf16."


def test_machine_record_matches_this_machine():
    from fairl_lib.llm.fast.precision import cpu_has_bf16
    from fairl_lib.pipeline import machine

    m = machine()
    assert m["cpus"] == os.cpu_count() and m["bf16"] == cpu_has_bf16() and isinstance(m["cpu_model"], str)


def test_summary_table_refuses_what_is_not_a_run():
    with pytest.raises(ValueError, match="not a run.json"):
        summary_table({"profile": "cpu"})


def test_summary_option_prints_the_table_or_one_line_error(tmp_path):
    run_json = tmp_path / "run.json"
    run_json.write_text(json.dumps(HAND_RUN))
    out = run_pipeline(tmp_path, "--summary", str(run_json))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == summary_table(HAND_RUN)
    for bad, content in (("missing.json", None), ("metrics.json", '{"f1": 0.5}'), ("broken.json", "{not json")):
        if content is not None:
            (tmp_path / bad).write_text(content)
        out = run_pipeline(tmp_path, "--summary", str(tmp_path / bad))
        assert out.returncode == 2 and out.stdout == "", (bad, out.stdout)
        assert out.stderr.startswith("error: ") and len(out.stderr.strip().splitlines()) == 1, out.stderr


def figures_state() -> dict[str, float]:
    return {p.name: p.stat().st_mtime for p in (ROOT / "figures").glob("*")}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    before = figures_state()
    proc = run_pipeline(results, "smoke")
    assert figures_state() == before, "the smoke profile must never touch the top-level figures/"
    print(proc.stdout[-4000:], proc.stderr[-4000:])
    assert proc.returncode == 0, f"smoke pipeline failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return results / "smoke", proc


def metrics(smoke_run, name: str) -> dict:
    return json.loads((smoke_run[0] / "metrics" / f"{name}.json").read_text())


@pytest.mark.pipeline
def test_smoke_pipeline_writes_everything(smoke_run):
    res, proc = smoke_run
    run = json.loads((res / "run.json").read_text())
    assert run["status"] == "ok" and run["profile"] == "smoke"
    assert run["precision"] == {"gen": "fp32", "rlhf": "fp32"} and run["machine"]["cpus"] == os.cpu_count()
    assert set(run["notebooks"]) == {b.stem for b in BOOKS}
    assert all(v["seconds"] > 0 for v in run["notebooks"].values())
    # each notebook's own peak (not a running maximum): the pairs stage (two LMs, a worker process)
    # and re-RLHF (two RLHF workers) hold far more than the theory toy's kernel, which still holds
    # a Python kernel with torch imported; a running maximum would give 03 at least 02's peak
    peak = {stem: v["peak_rss_mb"] for stem, v in run["notebooks"].items()}
    assert 100 < peak["03_theory_toy"] < peak["02_preference_pairs"] / 1.5
    assert peak["08_rerlhf"] > 2 * peak["03_theory_toy"]
    for book in BOOKS:
        assert (res / "notebooks" / book.name).exists()
        assert (res / "metrics" / f"{book.stem}.json").exists()
    assert "All" in proc.stdout
    assert summary_table(run) in proc.stdout  # the run ends with its runtime table


@pytest.mark.pipeline
def test_smoke_run_builds_its_site(smoke_run):
    """The run ends with its static site (fairl_lib.analysis.site): a contents page that links the
    page of every executed notebook (tests/test_site.py opens such a site in a browser)."""
    res, proc = smoke_run
    index = res / "site" / "index.html"
    assert index.exists() and str(index) in proc.stdout
    contents = index.read_text()
    for book in BOOKS:
        assert (res / "notebooks" / book.name).exists()
        assert f'href="notebooks/{book.stem}.html"' in contents, f"the contents page does not link {book.stem}"
        assert (res / "site" / "notebooks" / f"{book.stem}.html").exists()


@pytest.mark.pipeline
def test_smoke_site_in_a_real_browser(smoke_run, tmp_path):
    """The smoke run's own site in headless Chromium (tests/browser.py): every page the contents page
    links loads, with its images, internal links and math; screenshots of the contents page and of
    notebook 05 (also to results/site-screenshots/ when FAIRL_SITE_SCREENSHOTS is set)."""
    from browser import browse

    res, _ = smoke_run
    out = (res / "site").resolve()
    folders = (repo_root() / "results" / "site-screenshots",) if os.environ.get("FAIRL_SITE_SCREENSHOTS") else ()
    state = browse(out / "index.html", tmp_path, {"index.html": "smoke-contents.png",
                                                  "05_tables.html": "smoke-05.png"}, folders)
    assert {out / "notebooks" / f"{b.stem}.html" for b in BOOKS} | {out / "report.html"} <= set(state)
    assert state[out / "notebooks" / "05_tables.html"]["imgs"], "notebook 05's figures are missing"
    report = state[out / "report.html"]
    assert report["tex"] == 0 or len(report["math"]) >= report["tex"]
    assert (tmp_path / "smoke-05.png").stat().st_size > 10_000


# Pinned smoke numbers (recommenders style): values of the smoke profile at seed 0, checked with a
# tolerance. Only numbers that do not depend on the CPU's floating-point kernels are pinned: the
# theory toy (numpy on fixed draws) and the two scorers' ROC-AUC on the fixed Jigsaw rows (a
# deterministic forward pass). LM sampling can flip a token on another CPU, so counts of sampled
# completions are checked by their invariants instead.
PINNED = {
    "03_theory_toy": {"mean_arc_width_base": (1.1137794, 1e-6), "mean_arc_width_fa": (0.8598792, 1e-6),
                      "area_mean_base": (0.5568614, 1e-6), "area_mean_fa": (0.3576043, 1e-6),
                      "frac_truth_in_fa": (0.77, 1e-9), "frac_binds_random_failures": (0.57, 1e-9),
                      "frac_fa_empty": (0.08, 1e-9)},
    "02_preference_pairs": {"auc_ground_truth_jigsaw": (0.9536111, 2e-3), "auc_judge_jigsaw": (0.9683333, 2e-3)},
}


@pytest.mark.pipeline
@pytest.mark.parametrize("name", sorted(PINNED))
def test_smoke_metrics_match_pinned_values(smoke_run, name):
    m = metrics(smoke_run, name)
    for key, (want, tol) in PINNED[name].items():
        assert m[key] == pytest.approx(want, abs=tol), key


@pytest.mark.pipeline
def test_smoke_theory_toy_metrics(smoke_run):
    m = metrics(smoke_run, "03_theory_toy")
    assert m["never_larger_fraction"] == 1.0  # Corollary 1: ambiguity never grows
    assert 0 < m["strictly_smaller_fraction"] <= 1.0
    assert m["mean_arc_width_fa"] <= m["mean_arc_width_base"]
    # Theorem 1's "strict for ANY non-empty failure set" fails when failures are drawn at random
    assert m["strictly_smaller_fraction_random_failures"] < 1.0


@pytest.mark.pipeline
def test_same_seed_same_metrics(smoke_run, tmp_path):
    """Same profile and seed give identical metrics files (recomputed from scratch: FORCE)."""
    proc = run_pipeline(tmp_path, "smoke", "--only", "03", "--force")
    assert proc.returncode == 0, proc.stderr[-2000:]
    first = (smoke_run[0] / "metrics" / "03_theory_toy.json").read_bytes()
    assert (tmp_path / "smoke" / "metrics" / "03_theory_toy.json").read_bytes() == first


@pytest.mark.pipeline
def test_smoke_expert_and_pairs_metrics(smoke_run):
    m1 = metrics(smoke_run, "01_rlhf_expert")
    for key in ("toxicity_rate_base", "toxicity_rate_expert", "judge_rate_base", "judge_rate_expert"):
        assert 0.0 <= m1[key] <= 1.0, key
    assert math.isfinite(m1["kl_final"]) and m1["perplexity_base"] > 1 and m1["perplexity_expert"] > 1
    assert m1["algorithm"] == "rloo"
    m2 = metrics(smoke_run, "02_preference_pairs")
    assert sum(m2["pair_types"].values()) == m2["n_pairs"] == m2["n_train"] + m2["n_test"]
    # both toxicity scorers are real classifiers: far better than chance on human Jigsaw labels
    assert m2["auc_ground_truth_jigsaw"] > 0.8 and m2["auc_judge_jigsaw"] > 0.8
    pairs = pd.read_parquet(next((smoke_run[0] / "stages" / "pairs").glob("*/pairs.parquet")))
    train, test = (set(pairs.loc[pairs.split == s, "prompt_id"]) for s in ("train", "test"))
    assert train and test and not train & test  # split by prompt: no prompt leaks


@pytest.mark.pipeline
def test_smoke_irl_tables(smoke_run):
    m5 = metrics(smoke_run, "05_tables")
    methods = {"mm_irl", "me_irl", "mm_fa_gt", "me_fa_gt", "mm_fa_margin", "me_fa_margin"}
    for split in ("in_domain", "jigsaw"):
        table = m5["table1"][split]
        assert set(table) == methods
        for row in table.values():
            assert 0.0 <= row["f1"]["mean"] <= 1.0 and 0.0 <= row["auc"]["mean"] <= 1.0
            assert 0.0 <= row["starc"]["mean"] <= 2.0  # Eq. 4 lies in [0, 2]
    assert (smoke_run[0] / "rewards" / "me_fa_margin" / "seed0").is_dir()
    # the penalty-scale sweep: c = 1 is notebook 04's grid, so its numbers are Table 1's
    sweep = m5["penalty_sweep"]
    assert sweep["scales"] == [1.0, 0.01] and sweep["main_scale_is_notebook04_grid"]
    for m in methods:
        for split in ("in_domain", "jigsaw"):
            for k in ("f1", "auc", "starc"):
                assert sweep["by_scale"]["1"][m][f"{split}_{k}"] == m5["table1"][split][m][k]
        assert 0.0 <= sweep["by_scale"]["0.01"][m]["pairs_flipped_by_R_F"]["mean"] <= 1.0


@pytest.mark.pipeline
def test_smoke_appendices_and_report(smoke_run):
    m6 = metrics(smoke_run, "06_pair_mix")
    for entry in m6["pair_mix"].values():
        if entry["status"] != "skipped":
            for stats in entry["methods"].values():
                assert stats["min"] <= stats["mean"] <= stats["max"]
        else:
            assert entry["note"]  # a shortage is said, never resampled silently
    m7 = metrics(smoke_run, "07_model_size")
    assert 130 < m7["smollm2-135m"]["params_millions"] < 140
    m8 = metrics(smoke_run, "08_rerlhf")
    for kind in ("ground_truth", "fa_irl", "irl"):
        assert 0.0 <= m8[kind]["toxicity_rate_final"] <= 1.0
        assert 0.0 <= m8[kind]["judge_rate_final"] <= 1.0
    # the learned arms trained twice (two RLHF seeds, distinct runs), the ground truth is the expert
    assert [r["rlhf_seed"] for r in m8["fa_irl"]["runs"]] == [0, 1] and m8["ground_truth"]["n_runs"] == 1
    assert len({r["folder"] for r in m8["fa_irl"]["runs"] + m8["irl"]["runs"]}) == 4
    assert m8["fa_irl"]["n_completions_final"] == sum(r["n_completions"] for r in m8["fa_irl"]["runs"])
    m11 = metrics(smoke_run, "11_reproduction_report")
    ledger = m11["ledger"]
    from fairl_lib.analysis.report import VERDICTS

    assert all(row["verdict"] in VERDICTS for row in ledger.values())
    # every judged claim records its effect of interest (exact claims: none) and what its interval covers
    assert all("effect_of_interest" in row and "covers" in row for row in ledger.values())
    # exact claims checked on the toy: Theorem 1's inclusion holds, App. B's sharpening case does not
    assert ledger["theorem1_inclusion"]["verdict"] == "reproduced"
    assert ledger["appb_sharpen"]["verdict"] == "not reproduced"
    assert ledger["theorem1_strict"]["verdict"] == "not reproduced"
    assert "smoke" in (smoke_run[0] / "REPORT.md").read_text()


@pytest.mark.pipeline
def test_smoke_audit(smoke_run):
    """Notebook 10 on the smoke expert: every RLHF rollout was recorded, the targets fill up to
    [audit] min_targets, every explanation set lies within max_size, the controls have the method's size,
    the rates are rates, and the ledger judged the audit's three claims."""
    res = smoke_run[0]
    files = list((res / "stages" / "expert").glob("*/rlhf/rollouts.jsonl"))
    assert len(files) == 1 and len(files[0].read_text().splitlines()) == 3 * 4 * 2  # steps x prompts x samples
    m10 = metrics(smoke_run, "10_audit")
    assert 4 <= m10["targets"]["n"] <= 6 and 0 <= m10["targets"]["n_toxic"] <= m10["targets"]["n"]
    # 4 fresh samples + notebook 01's 8 evaluation samples ([audit] reuse_expert_eval) per held-out prompt
    assert m10["targets"]["n_candidates"] == (4 + 8) * 8
    ex = m10["explain"]
    assert len(ex["sizes"]) == m10["targets"]["n"] and all(1 <= s <= ex["max_size"] for s in ex["sizes"])
    assert ex["set_sizes"]["random"] == ex["set_sizes"]["nearest"] == ex["set_size"] >= max(ex["sizes"])
    for model in ("expert", "method", "random", "nearest"):
        for split in ("target", "other"):
            e = m10["eval"][model][split]
            assert e["n"] == 0 or (0 <= e["rate"] <= 1 and e["rate_ci95"][0] <= e["rate"] <= e["rate_ci95"][1])
    assert m10["eval"]["expert"]["target"]["n"] > 0
    ledger = metrics(smoke_run, "11_reproduction_report")["ledger"]
    judged = {"reproduced", "negligible", "contradicted", "opposite", "identical", "inconclusive"}
    assert all(ledger[c]["verdict"] in judged for c in ("audit_small_sets", "audit_unlearning_fixes",
                                                       "audit_no_degradation"))


def stage_files(res: Path, stage: str) -> dict[str, int]:
    """Every file of a stage (all keys) with its modification time in ns."""
    return {str(p.relative_to(res)): p.stat().st_mtime_ns for p in (res / "stages" / stage).rglob("*") if p.is_file()}


@pytest.mark.pipeline
@pytest.mark.parametrize("nb", ["06", "07", "08"])
def test_force_downstream_leaves_expert_and_pairs_untouched(smoke_run, nb):
    """FORCE in notebooks 06-08 recomputes only the stages they own: notebook 01's expert and
    notebook 02's pairs keep the same files with the same modification times."""
    res = smoke_run[0]
    before = {s: stage_files(res, s) for s in ("expert", "pairs")}
    assert before["expert"] and before["pairs"]
    proc = run_pipeline(res.parent, "smoke", "--only", nb, "--force")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert {s: stage_files(res, s) for s in ("expert", "pairs")} == before


@pytest.mark.pipeline
def test_irl_training_is_deterministic(smoke_run):
    """FORCE retrains the IRL grid (04) and re-evaluates (05) on the same cached pairs: same bytes."""
    res = smoke_run[0]
    before = {n: (res / "metrics" / f"{n}.json").read_bytes() for n in ("04_fairl_training", "05_tables")}
    for nb in ("04", "05"):
        proc = run_pipeline(res.parent, "smoke", "--only", nb, "--force")
        assert proc.returncode == 0, proc.stderr[-2000:]
    for name, first in before.items():
        assert (res / "metrics" / f"{name}.json").read_bytes() == first, name
