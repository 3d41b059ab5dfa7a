"""`offrl dynamics train | eval` and the bad-input messages of model-based runs."""

from __future__ import annotations

import json

from offrl.cli import main

from conftest import make_dataset

SMALL = ["--hidden-dims", "16", "16", "--members", "2", "--elites", "1", "--max-epochs", "4"]


def test_dynamics_train_eval_and_bad_input(tmp_path, offrl_home, capsys):
    data = make_dataset(n=400).save_npz(tmp_path / "data.npz")
    other = make_dataset(n=400, seed=1).save_npz(tmp_path / "other.npz")
    out = tmp_path / "model"
    assert main(["dynamics", "train", str(data), "--out", str(out), *SMALL]) == 0
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["epochs"] == 4 and card["stopped_by"] == "max_epochs" and len(card["holdout_mse"]) == 2
    assert "held-out MSE" in capsys.readouterr().out
    assert main(["dynamics", "eval", str(data), "--dynamics", str(out), "--horizon", "3", "--num-starts", "16"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("horizon")]
    assert len(lines) == 3 and "state MSE" in lines[0]
    # a model made from another dataset: one line naming the fix, exit 2
    assert main(["dynamics", "eval", str(other), "--dynamics", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "trained on another dataset" in err and "offrl dynamics train" in err and len(err.splitlines()) == 1
    assert main(["train", "mopo", "--dataset", str(other), "--steps", "2", "--algo.dynamics", str(out), "--no-progress"]) == 2
    assert "trained on another dataset" in capsys.readouterr().err
    # too small to hold out a validation split
    tiny = make_dataset(n=4, episode_len=2).save_npz(tmp_path / "tiny.npz")
    assert main(["dynamics", "train", str(tiny), *SMALL]) == 2
    err = capsys.readouterr().err
    assert "too few to hold out a validation split" in err and "Fix:" in err
    # --termination never on data with terminals (no known rule)
    assert main(["train", "mopo", "--dataset", str(data), "--steps", "2", "--algo.dynamics", str(out),
                 "--algo.termination", "never", "--no-progress"]) == 2
    assert "termination 'never' but the dataset has terminal transitions" in capsys.readouterr().err
