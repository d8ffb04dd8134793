"""`audit explain` on anyone's data: training and responses files, pairs as feature differences, answers
worked out by hand on explicit feature vectors, the CLI end to end with the real MiniLM (its cache hit
on the second call, the expert's own rollouts through the same code), and one line per user mistake."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from fairl_lib import cli
from fairl_lib.analysis import explain_data as X

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _table(vectors: dict[str, tuple[float, ...]]):
    """A feature map given as a table: text -> its vector (the hand-checked cases below)."""
    return lambda texts: np.array([vectors[t] for t in texts], dtype=np.float64)


# ----------------------------------------------------------------------------- hand-checked answers


def test_pairs_are_feature_differences_and_a_midpoint_is_explained_by_two_of_them(tmp_path):
    # phi: a=(1,0), c=(0,1), e=(3,3), b=(0,0). Pairs (a,b), (c,b), (e,b) are the vectors (1,0), (0,1), (3,3).
    # The response r at (0.5, 0.5) is 0.707 from the first two (a tie, broken by index) and 3.54 from the third:
    # k = 1 leaves the whole gap (relative residual 1 > 0.5); k = 2 holds r exactly, with weights 1/2, 1/2.
    phi = _table({"a": (1, 0), "b": (0, 0), "c": (0, 1), "e": (3, 3), "r": (0.5, 0.5)})
    train = X.read_training(_jsonl(tmp_path / "pairs.jsonl", [
        {"prompt": "p", "chosen": "a", "rejected": "b"}, {"chosen": "c", "rejected": "b"}, "",
        {"prompt": "q", "chosen": "e", "rejected": "b", "note": "ignored"}]))
    assert train.kind == "pairs" and train.index == [0, 1, 2] and train.lines == [1, 2, 4]
    np.testing.assert_array_equal(X.training_features(train, phi), [[1, 0], [0, 1], [3, 3]])
    [rec] = X.explain_responses(train, [{"response": "r"}], phi, tol=0.5, max_size=3)
    assert rec["within_tol"] and rec["k"] == 2 and rec["size"] == 2
    assert rec["residual"] == pytest.approx(0, abs=1e-9) and rec["nearest"] == pytest.approx(np.sqrt(0.5))
    assert sorted(m["index"] for m in rec["members"]) == [0, 1]
    assert [m["weight"] for m in rec["members"]] == pytest.approx([0.5, 0.5], abs=1e-9)
    first = next(m for m in rec["members"] if m["index"] == 0)
    assert first == {"index": 0, "line": 1, "weight": pytest.approx(0.5, abs=1e-9), "prompt": "p", "chosen": "a",
                     "rejected": "b"}


def test_a_response_outside_every_hull_reports_its_residual_and_the_nearest_example(tmp_path):
    # pool (1,0), (0,1); response (2,0). Its projection on the segment is the end (1,0): residual 1, relative
    # 1 (the nearest example is 1 away), the other end gets weight 0 and is pruned; k = max_size = 2.
    phi = _table({"a": (1, 0), "c": (0, 1), "r": (2, 0)})
    train = X.read_training(_jsonl(tmp_path / "scored.jsonl", [{"completion": "a", "reward": 1},
                                                               {"completion": "c", "reward": 0.5}]))
    [rec] = X.explain_responses(train, [{"response": "r", "line": 7}], phi, tol=0.5, max_size=2)
    assert not rec["within_tol"] and rec["k"] == 2 and rec["size"] == 1
    assert rec["residual"] == pytest.approx(1.0) and rec["relative_residual"] == pytest.approx(1.0)
    assert rec["members"] == [{"index": 0, "line": 1, "weight": 1.0, "completion": "a", "reward": 1.0}]
    assert rec["line"] == 7 and rec["response"] == "r"


def test_scored_completions_a_response_equal_to_one_is_that_one_and_min_reward_keeps_the_numbering(tmp_path):
    # phi(completion): x=(0,0), y=(2,0), z=(0,2). The response "y" is example 1 itself (residual 0); the
    # response at (1,1) is the midpoint of y and z. With --min-reward 0.5 only y and z (rewards 0.9, 0.7)
    # remain, still numbered 1 and 2 and on lines 2 and 3.
    phi = _table({"x": (0, 0), "y": (2, 0), "z": (0, 2), "m": (1, 1)})
    path = _jsonl(tmp_path / "scored.jsonl", [{"completion": "x", "reward": 0.1}, {"completion": "y", "reward": 0.9},
                                              {"completion": "z", "reward": 0.7, "prompt": "p"}])
    [same, mid] = X.explain_responses(X.read_training(path), [{"response": "y"}, {"response": "m"}], phi, 0.5, 3)
    assert same["within_tol"] and same["residual"] == 0 and same["relative_residual"] == 0
    assert [(m["index"], m["weight"]) for m in same["members"]] == [(1, 1.0)]
    assert mid["within_tol"] and mid["residual"] == pytest.approx(0, abs=1e-9)
    kept = X.read_training(path, min_reward=0.5)
    assert kept.index == [1, 2] and kept.lines == [2, 3] and kept.examples[1] == {"prompt": "p", "completion": "z",
                                                                                  "reward": 0.7}
    [rec] = X.explain_responses(kept, [{"response": "m"}], phi, 0.5, 3)
    assert sorted((m["index"], round(m["weight"], 9)) for m in rec["members"]) == [(1, 0.5), (2, 0.5)]


def test_prompt_completion_features_embed_prompt_then_text(tmp_path):
    seen = []

    def phi(texts):
        seen.extend(texts)
        return np.ones((len(texts), 2))

    train = X.read_training(_jsonl(tmp_path / "p.jsonl", [{"prompt": "P ", "chosen": "c", "rejected": "r"}]))
    X.explain_responses(train, [{"prompt": "Q ", "response": "s"}], phi, 0.5, 2, features="prompt_completion")
    assert seen == ["P c", "P r", "Q s"]
    with pytest.raises(X.DataError, match="responses:1: --features prompt_completion needs a 'prompt'"):
        X.explain_responses(train, [{"response": "s"}], phi, 0.5, 2, features="prompt_completion")


def test_responses_files_json_lines_or_plain_text(tmp_path):
    rows = X.read_responses(_jsonl(tmp_path / "r.jsonl", [{"response": "a", "prompt": "p"}, "", {"response": "b"}]))
    assert rows == [{"prompt": "p", "response": "a", "line": 1}, {"response": "b", "line": 3}]
    (tmp_path / "r.txt").write_text('first response\n\n{"not": "json, just text"}\n')
    assert X.read_responses(tmp_path / "r.txt") == [{"response": "first response", "line": 1},
                                                     {"response": '{"not": "json, just text"}', "line": 3}]


def test_render_text_shows_the_verdict_and_members(tmp_path):
    phi = _table({"a": (1, 0), "c": (0, 1), "r": (0.5, 0.5)})
    train = X.read_training(_jsonl(tmp_path / "s.jsonl", [{"completion": "a", "reward": 1}, {"completion": "c",
                                                                                             "reward": 2}]))
    recs = X.explain_responses(train, [{"response": "r", "prompt": "why"}], phi, 0.5, 4)
    text = X.render_text(X.report(train, recs, "table", "completion", 0.5, 4))
    assert "2 scored completions" in text and "phi(completion)" in text and "within tolerance" in text
    assert 'prompt: "why"' in text and "example 1, line 2 (reward 2)" in text and 'completion: "c"' in text


def test_the_help_states_the_defaults_the_command_uses():
    from fairl_lib.stages.audit import AuditConfig

    sub = cli.build_parser()._subparsers._group_actions[0].choices["audit"]
    text = sub._subparsers._group_actions[0].choices["explain"].format_help()
    ac = AuditConfig()
    assert f"default {ac.tol:g}" in text and f"default {ac.max_size}" in text
    assert "phi(chosen) - phi(rejected)" in text and "phi(completion)" in text and ".txt" in text
    explain = next(c for c in cli.COMMANDS if c.path == ("audit", "explain"))
    features = next(kw for flags, kw in explain.args if flags == ("--features",))
    assert tuple(features["choices"]) == X.FEATURES


# ----------------------------------------------------------------------------- user mistakes: one line, exit 2

PAIR = {"prompt": "p", "chosen": "good", "rejected": "bad"}
SCORED = {"prompt": "p", "completion": "text", "reward": 0.5}


@pytest.mark.parametrize("train, responses, extra, needle", [
    (None, ["r"], [], "no file {tmp}/train.jsonl: pass JSON lines of preference pairs"),
    ([PAIR, "", '{"prompt": "p", "chosen": "x",'], ["r"], [], "{tmp}/train.jsonl:3: not valid JSON"),
    ([PAIR, "[1, 2]"], ["r"], [], "{tmp}/train.jsonl:2: a JSON list, not an object"),
    ([PAIR, {"prompt": "p", "text": "x"}], ["r"], [],
     ("{tmp}/train.jsonl:2: a training line needs 'chosen' and 'rejected' (a preference pair) or 'completion' and "
      "'reward' (a scored completion); its keys: 'prompt', 'text'")),
    ([PAIR, SCORED], ["r"], [], "{tmp}/train.jsonl:2: a scored completion in a file of preference pairs (line 1)"),
    ([SCORED, {**SCORED, "reward": "high"}], ["r"], [], "{tmp}/train.jsonl:2: 'reward' must be a finite number"),
    ([{**PAIR, "chosen": 3}], ["r"], [], "{tmp}/train.jsonl:1: 'chosen' must be a string, not int"),
    (["", "  "], ["r"], [], "{tmp}/train.jsonl is empty"),
    ([PAIR], None, [], "no file {tmp}/responses.jsonl"),
    ([PAIR], [{"text": "r"}], [], "{tmp}/responses.jsonl:1: a response line needs 'response'"),
    ([PAIR], ["not json"], [], "{tmp}/responses.jsonl:1: not valid JSON"),
    ([PAIR], [""], [], "{tmp}/responses.jsonl is empty"),
    ([PAIR], ["r"], ["--embedder", "nope"], "unknown embedder 'nope'; valid names: minilm"),
    ([PAIR], ["r"], ["--reward", "{tmp}/no-reward"], "no reward in {tmp}/no-reward (no reward.safetensors)"),
    ([PAIR], ["r"], ["--reward", "{tmp}", "--embedder", "minilm"], "give --embedder NAME or --reward FOLDER"),
    ([PAIR], ["r"], ["--min-reward", "0"], "--min-reward applies to scored completions"),
    ([SCORED], ["r"], ["--min-reward", "0.5"], "no example of {tmp}/train.jsonl has a reward above 0.5"),
    ([SCORED], ["r"], ["--features", "prompt_completion"],
     "{tmp}/responses.jsonl:1: --features prompt_completion needs a 'prompt'"),
    ([SCORED], ["r"], ["--tol", "-1"], "--tol must be >= 0 and --max-size >= 1"),
    ([SCORED], ["r"], ["--response", "x"], "give --responses FILE or --prompt/--response, not both"),
])
def test_user_mistakes_are_one_line_naming_file_and_line(tmp_path, monkeypatch, capsys, train, responses, extra,
                                                         needle):
    monkeypatch.setenv("FAIRL_CACHE", str(tmp_path / "cache"))
    if train is not None:
        _jsonl(tmp_path / "train.jsonl", train)
    if responses is not None:
        _jsonl(tmp_path / "responses.jsonl", [r if not isinstance(r, str) or r in ("", "not json") else
                                              {"response": r} for r in responses])
    argv = ["audit", "explain", "--train", str(tmp_path / "train.jsonl"), "--responses",
            str(tmp_path / "responses.jsonl"), *[a.replace("{tmp}", str(tmp_path)) for a in extra]]
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("error: "), err
    assert needle.replace("{tmp}", str(tmp_path)) in err, err


def test_a_responses_text_file_without_text_and_a_missing_response(tmp_path, capsys):
    _jsonl(tmp_path / "train.jsonl", [PAIR])
    (tmp_path / "r.txt").write_text("\n \n")
    assert cli.main(["audit", "explain", "--train", str(tmp_path / "train.jsonl"), "--responses",
                     str(tmp_path / "r.txt")]) == 2
    assert f"{tmp_path}/r.txt is empty" in capsys.readouterr().err
    assert cli.main(["audit", "explain", "--train", str(tmp_path / "train.jsonl")]) == 2
    assert "give --responses FILE" in capsys.readouterr().err


# ----------------------------------------------------------------------------- end to end with MiniLM


@pytest.fixture
def fresh_embeddings(tmp_path, monkeypatch):
    """An empty embedding cache and no embedder loaded yet, with the real MiniLM from where it is now."""
    from fairl_lib.llm import assets, models

    monkeypatch.setenv("FAIRL_ASSET_MINILM", str(assets.fetch("minilm")))
    monkeypatch.setenv("FAIRL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(models, "_EMBEDDERS", {})
    return models


TEXTS = ["is sunny and warm, a lovely day for a walk.", "is cold and rainy, stay inside.",
         "a kind old man who waters my plants.", "an idiot and I hate him.", "won the match after a hard fight."]


def _check_weights_and_residual(rec, pool: np.ndarray, phi_r: np.ndarray, n: int):
    idx = [m["index"] for m in rec["members"]]
    w = np.array([m["weight"] for m in rec["members"]])
    assert len(set(idx)) == len(idx) and all(0 <= i < n for i in idx) and 1 <= rec["size"] <= rec["k"]
    assert (w > 0).all() and w.sum() == pytest.approx(1.0, abs=1e-9)
    assert rec["residual"] == pytest.approx(float(np.linalg.norm(phi_r - w @ pool[idx])), abs=1e-5)
    if rec["nearest"] > 0:
        assert rec["relative_residual"] == pytest.approx(rec["residual"] / rec["nearest"])
    assert rec["within_tol"] == (rec["relative_residual"] <= 0.75)


@pytest.mark.assets
def test_cli_on_scored_completions_and_the_cache_the_second_time(tmp_path, capsys, fresh_embeddings):
    train = _jsonl(tmp_path / "train.jsonl", [{"prompt": f"p{j}", "completion": t, "reward": j / 4}
                                              for j, t in enumerate(TEXTS)])
    responses = tmp_path / "responses.txt"
    responses.write_text(f"{TEXTS[2]}\nwhat a bunch of idiots\n")
    out_json = tmp_path / "out" / "explain.json"
    argv = ["audit", "explain", "--train", str(train), "--responses", str(responses), "--json", str(out_json)]
    assert cli.main(argv) == 0
    err = capsys.readouterr().err
    assert "embedded 6 text(s), 1 read from the cache" in err  # 5 completions + 1 new response; the other is one
    doc = json.loads(out_json.read_text())
    assert doc["training"] == {"source": str(train), "kind": "scored", "representation": "phi(completion)",
                               "n_examples": 5}
    same, _ = doc["responses"]
    assert same["response"] == TEXTS[2] and same["line"] == 1 and same["within_tol"]
    assert same["residual"] < 1e-6 and [(m["index"], m["line"], m["weight"]) for m in same["members"]] == [(2, 3, 1.0)]
    assert same["members"][0]["completion"] == TEXTS[2] and same["members"][0]["reward"] == 0.5
    phi = fresh_embeddings.get_embedder("minilm").embed
    pool = phi(TEXTS).astype(np.float64)
    for rec in doc["responses"]:
        _check_weights_and_residual(rec, pool, phi([rec["response"]])[0].astype(np.float64), len(TEXTS))
    # the second call reads every vector from the cache and gives the same answer, here printed
    assert cli.main(argv[:-2]) == 0
    out, err = capsys.readouterr()
    assert "embedded 0 text(s), 7 read from the cache" in err
    assert "response 1 (line 1)" in out and "within tolerance: relative residual 0.000" in out
    assert "example 2, line 3 (reward 0.5)" in out and "response 2 (line 2)" in out
    assert cli.main(argv[:-2] + ["--json", "-"]) == 0
    assert json.loads(capsys.readouterr().out) == doc


@pytest.mark.assets
def test_cli_on_preference_pairs_explains_by_feature_differences(tmp_path, capsys, fresh_embeddings):
    pairs = [(TEXTS[0], TEXTS[1]), (TEXTS[2], TEXTS[3]), (TEXTS[4], "played terribly, a bunch of losers.")]
    train = _jsonl(tmp_path / "pairs.jsonl", [{"prompt": "p", "chosen": c, "rejected": r} for c, r in pairs])
    responses = _jsonl(tmp_path / "r.jsonl", [{"prompt": "q", "response": "my neighbour is a lovely man"},
                                              {"response": "what a bunch of idiots"}])
    assert cli.main(["audit", "explain", "--train", str(train), "--responses", str(responses), "--json", "-",
                     "--tol", "0.9", "--max-size", "3"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["training"]["kind"] == "pairs" and doc["training"]["representation"] == "phi(chosen) - phi(rejected)"
    assert doc["tol"] == 0.9 and doc["max_size"] == 3
    phi = fresh_embeddings.get_embedder("minilm").embed
    delta = (phi([c for c, _ in pairs]) - phi([r for _, r in pairs])).astype(np.float64)
    for rec in doc["responses"]:
        idx = [m["index"] for m in rec["members"]]
        w = np.array([m["weight"] for m in rec["members"]])
        assert (w > 0).all() and w.sum() == pytest.approx(1.0, abs=1e-9) and rec["k"] <= 3
        residual = float(np.linalg.norm(phi([rec["response"]])[0] - w @ delta[idx]))
        assert rec["residual"] == pytest.approx(residual, abs=1e-5)
        assert rec["within_tol"] == (rec["relative_residual"] <= 0.9)
        assert all(m["chosen"] == pairs[m["index"]][0] and m["rejected"] == pairs[m["index"]][1]
                   for m in rec["members"])
    assert doc["responses"][0]["prompt"] == "q" and "prompt" not in doc["responses"][1]


@pytest.mark.assets
def test_the_expert_path_explains_by_its_reinforced_rollouts_through_the_same_code(results_tmp, capsys,
                                                                                 fresh_embeddings):
    from fairl_lib.cache import RECEIPT
    from fairl_lib.config import make_config
    from fairl_lib.stages.expert import expert_folder

    folder = expert_folder(make_config("smoke"))
    (folder / "rlhf").mkdir(parents=True)
    (folder / RECEIPT).write_text("{}")
    (folder / "rlhf" / "rlhf.json").write_text(json.dumps({"config": {"steps": 2, "prompts_per_step": 1,
                                                                      "generations_per_prompt": 2}}))
    # two RLOO groups of two: rewards 1.0 / 0.0 (advantages +1, -1) and 0.2 / 0.6 (-0.4, +0.4)
    rows = [(1, 0, TEXTS[0], 1.0), (1, 1, TEXTS[3], 0.0), (2, 0, TEXTS[1], 0.2), (2, 1, TEXTS[2], 0.6)]
    _jsonl(folder / "rlhf" / "rollouts.jsonl", [{"step": s, "i": i, "prompt": "p", "completion": c, "reward": r}
                                                for s, i, c, r in rows])
    assert cli.main(["audit", "explain", "--profile", "smoke", "--prompt", "q", "--response", TEXTS[2],
                     "--json", "-"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["training"]["n_examples"] == 2 and doc["training"]["kind"] == "scored"  # the reinforced rows 0, 3
    [rec] = doc["responses"]
    assert rec["prompt"] == "q" and rec["within_tol"] and rec["residual"] < 1e-6
    assert rec["members"] == [{"index": 3, "weight": 1.0, "prompt": "p", "completion": TEXTS[2], "reward": 0.6,
                               "step": 2, "advantage": pytest.approx(0.4)}]
    assert doc["tol"] == 0.75 and doc["max_size"] == 6  # the smoke profile's [audit]
    # a rollout training pushed down (row 1, advantage -1) is not in the pool, even when it is the response
    assert cli.main(["audit", "explain", "--profile", "smoke", "--response", TEXTS[3], "--json", "-"]) == 0
    assert 1 not in [m["index"] for m in json.loads(capsys.readouterr().out)["responses"][0]["members"]]
