"""Command line: sub-command registry, `score toxicity` JSON lines, `assets` commands, exit codes."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest

from fairl_lib import cli


def _run(monkeypatch, capsys, argv: list[str], stdin: str = "") -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _subcommands(parser) -> dict:
    action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return action.choices


def test_parser_has_the_commands():
    top = _subcommands(cli.build_parser())
    assert {"score", "assets"} <= set(top)
    assert "toxicity" in _subcommands(top["score"])
    assert {"fetch", "list"} <= set(_subcommands(top["assets"]))
    assert "explain" in _subcommands(top["audit"])


def test_adding_a_command_is_one_function(monkeypatch, capsys):
    monkeypatch.setattr(cli, "COMMANDS", list(cli.COMMANDS))

    @cli.command("score echo", "Echo a path.", cli.arg("path"))
    def score_echo(ns):
        print(f"echo {ns.path}")
        return 0

    code, out, _ = _run(monkeypatch, capsys, ["score", "echo", "some/path"])
    assert code == 0 and out.strip() == "echo some/path"
    assert "toxicity" in _subcommands(_subcommands(cli.build_parser())["score"])


def test_unknown_scorer_exits_2_with_valid_names(monkeypatch, capsys):
    code, out, err = _run(monkeypatch, capsys, ["score", "toxicity", "--scorer", "nope"], "x\n")
    assert code == 2 and out == ""
    assert "Unknown scorer 'nope'" in err and "bilstm" in err


def test_assets_fetch_unknown_name_exits_2(monkeypatch, capsys):
    code, _, err = _run(monkeypatch, capsys, ["assets", "fetch", "no-such-asset"])
    assert code == 2 and "Valid assets" in err


def test_assets_list(monkeypatch, capsys):
    code, out, _ = _run(monkeypatch, capsys, ["assets", "list"])
    names = [line.split("\t")[0] for line in out.splitlines()]
    assert code == 0 and {"toxic-bilstm", "rtp", "jigsaw", "pythia-410m"} <= set(names)
    code, out, _ = _run(monkeypatch, capsys, ["assets", "list", "--profile", "paper"])
    assert code == 0 and "roberta-toxicity" in out


@pytest.mark.assets
def test_score_toxicity_json_lines(monkeypatch, capsys):
    stdin = "You are so dumb and stupid!\n\nHave a nice day :)\nno newline at the end"
    code, out, _ = _run(monkeypatch, capsys, ["score", "toxicity", "--profile", "cpu", "--batch-size", "2"], stdin)
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0
    assert [r["text"] for r in rows] == ["You are so dumb and stupid!", "", "Have a nice day :)", "no newline at the end"]
    assert set(rows[0]["scores"]) == {"toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate"}
    assert rows[0]["scores"]["toxic"] == pytest.approx(0.98894, abs=1e-4) and rows[0]["toxic"] is True
    assert rows[2]["toxic"] is False
    code, out, _ = _run(monkeypatch, capsys, ["score", "toxicity", "--scorer", "profanity"], "you idiot\n")
    row = json.loads(out)
    assert code == 0 and list(row["scores"]) == ["toxic"] and row["toxic"] is True


@pytest.mark.assets
def test_python_dash_m_works_offline():
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "fairl_lib", "score", "toxicity"], check=False, input="you are stupid\n",
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    row = json.loads(proc.stdout)
    assert row["text"] == "you are stupid" and row["scores"]["toxic"] > 0.5


@pytest.mark.parametrize("argv, needle", [
    (["score", "reward", "/no/such/reward/folder"], "no reward in /no/such/reward/folder"),
    (["assets", "fetch", "--profile", "no-such-profile"], "Unknown profile 'no-such-profile'"),
    (["audit", "explain", "--train", "/no/such/train.jsonl", "--response", "r"], "no file /no/such/train.jsonl"),
])
def test_user_errors_print_one_line_without_traceback(argv, needle):
    proc = subprocess.run([sys.executable, "-m", "fairl_lib", *argv], check=False, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines == [lines[0]] and lines[0].startswith("error: ") and needle in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
