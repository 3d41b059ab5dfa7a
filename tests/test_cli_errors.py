"""A user's mistake on the command line is one line on stderr and exit status 2, never a traceback.

The table runs `offrl.cli.main` in the test process (fast: every wrong invocation fails before
anything compiles or trains); a few run as real processes to check the exit status and stderr
a user sees. A bug (any other exception) still raises with its traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from offrl import cli

from conftest import make_dataset, make_trajectory_dataset


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A small continuous dataset file (for the action-kind mismatch) and a folder that is no run."""
    root = tmp_path_factory.mktemp("cli_errors")
    path = root / "small.npz"
    make_dataset(n=200, act_dim=1).save_npz(path)
    (root / "not-a-run").mkdir()
    out = {"dataset": str(path), "not_a_run": str(root / "not-a-run"), "missing": str(root / "missing")}
    return {**out, **_ope_files(root)}


def _ope_files(root):
    """For `offrl ope`: a run trained for 2 updates on small discrete trajectories, and datasets that do not fit it."""
    import numpy as np

    from offrl.algos import get_algo
    from offrl.data import Dataset
    from offrl.train import fit

    from conftest import small_config

    good = make_trajectory_dataset()
    good.save_npz(root / "ope.npz")
    fit(small_config(get_algo("bc_discrete"), hidden_dims=(8,)), good, steps=2, chunk=2, run_dir=root / "ope-run",
        progress=False, plot=False)
    arrays = good.stored_arrays()
    zero = arrays["behaviour_log_probs"].copy()
    zero[7] = -np.inf
    Dataset.from_arrays(**{**arrays, "behaviour_log_probs": zero}, info=good.info).save_npz(root / "ope-zero.npz")
    make_trajectory_dataset(episodes=1, length=10).save_npz(root / "ope-flat.npz")
    make_trajectory_dataset(log_probs=False).save_npz(root / "ope-nolp.npz")
    make_trajectory_dataset(num_states=4).save_npz(root / "ope-wide.npz")
    return {"ope_run": str(root / "ope-run"), **{f"ope_{k}": str(root / f"ope-{k}.npz") for k in ("zero", "flat", "nolp", "wide")},
            "ope_data": str(root / "ope.npz")}


WRONG = [  # (argv with {placeholders}, text the one line must hold)
    ("train iql --steps 0", "fit.steps = 0 is out of range: must be an int >= 1"),
    ("train iql --seeds 0", "fit.seeds = 0 is out of range"),
    ("train iql --eval-episodes -1", "fit.eval_episodes = -1"),
    ("train iql --algo.expectile 1.5", "iql.Config.expectile = 1.5 is out of range: must be in (0, 1)"),
    ("train iql --algo.batch-size 0", "iql.Config.batch_size = 0"),
    ("train iql --algo.discount 1.5", "iql.Config.discount = 1.5 is out of range: must be in [0, 1]"),
    ("train iql --algo.hidden-dims 0 8", "iql.Config.hidden_dims = (0, 8)"),
    ("train td3bc --algo.policy-freq 0", "td3bc.Config.policy_freq = 0"),
    ("train iql --steps abc", "--steps: invalid literal for int()"),
    ("train iql --algo.log-std-bound tanh", "invalid choice 'tanh'"),
    ("train iql --algo.expectil 0.9", "did you mean --algo.expectile"),
    ("train nosuch", "unknown algorithm 'nosuch'"),
    ("train cql_discrete --dataset {dataset} --steps 10", "needs discrete actions but the dataset has continuous actions"),
    ("train bc --dataset {missing}.hdf5", "does not exist"),
    ("train --resume", "--resume needs a run folder"),
    ("train --resume {not_a_run}", "no checkpoint"),
    ("eval", "Missing from offrl eval"),
    ("eval {not_a_run}", "no checkpoint"),
    ("eval {not_a_run} --episodes 0", "episodes = 0 is out of range: must be an int >= 1"),
    ("eval {not_a_run} --target-returns 1,x", "--target-returns: 'x' is not a number"),
    ("train dt --dataset {dataset} --steps 10", "dt needs whole episodes, but the episodes of"),
    ("train dt --algo.context-len 0", "dt.Config.context_len = 0 is out of range"),
    ("train rvs --algo.return-scale 0", "rvs.Config.return_scale = 0.0 is out of range"),
    ("train rvs --algo.goal-dims 1 1", "rvs.Config.goal_dims = (1, 1) is invalid: must be a non-empty tuple of distinct ints"),
    ("train rvs --algo.conditioning goal --algo.goal 1 2 3", "rvs: goal has 3 values but goal_dims names 2 dimensions"),
    ("algos extra", "`offrl algos` takes no arguments"),
    ("data frob", "unknown data command 'frob'"),
    ("data make nosuch", "unknown dataset 'nosuch'"),
    ("data make pendulum-random --size 0", "size = 0 is out of range"),
    ("data info {missing}.npz", "does not exist"),
    ("data plot", "Missing from offrl data plot"),
    ("zoo frob", "unknown zoo command 'frob'"),
    ("zoo train", "Missing from offrl zoo train"),
    ("zoo train Pendulum-v1 --seeds 0", "seeds = 0 is out of range"),
    ("zoo train NoSuchEnv-v0", "no zoo defaults for 'NoSuchEnv-v0'"),
    ("zoo export {not_a_run}", "policy snapshots"),
    ("bench", "Missing from offrl bench"),
    ("bench nosuch", "unknown suite 'nosuch'"),
    ("bench maze-cpu --seeds 0", "seeds = 0 is out of range"),
    ("bench maze-cpu --algos nosuch", "nosuch"),
    ("report", "give at least one RUN_DIR"),
    ("report {not_a_run}", "has no eval.jsonl"),
    ("finetune", "Missing from offrl finetune"),
    ("finetune {missing}", "no checkpoint"),
    ("finetune {not_a_run} --offline-ratio 2", "offline_ratio = 2.0 is out of range: must be in [0, 1]"),
    ("finetune {not_a_run} --symmetric --offline-ratio 0.2", "--symmetric sets the offline ratio"),
    ("export", "Missing from offrl export"),
    ("export {not_a_run}", "no checkpoint"),
    ("export {not_a_run} --format tflite", "invalid choice 'tflite'"),
    ("export {not_a_run} --max-batch 0", "max_batch = 0 is out of range"),
    ("dynamics", "usage: offrl dynamics train DATASET"),
    ("dynamics train", "Missing from offrl dynamics train"),
    ("dynamics train pendulum-random --members 0", "members = 0 is out of range"),
    ("dynamics train pendulum-random --holdout-ratio 1.5", "holdout_ratio = 1.5 is out of range: must be in (0, 1)"),
    ("dynamics eval {missing}.npz", "does not exist"),
    ("ope", "give at least one RUN_DIR"),
    ("ope {not_a_run}", "no checkpoint"),
    ("ope {ope_run} --dataset {ope_data} --estimators is,nosuch", "unknown estimator(s) nosuch"),
    ("ope select {ope_run} --dataset {ope_data} --by is,wis", "--by takes one estimator"),
    ("ope {ope_run} --dataset {ope_flat} --estimators is", "needs episode boundaries"),
    ("ope {ope_run} --dataset {ope_zero} --estimators is", "gives probability zero (log-prob -inf) to 1 logged action"),
    ("ope {ope_run} --dataset {ope_wide} --estimators fqe", "comes from another observation space"),
    ("ope {ope_run} --dataset {ope_nolp} --estimators is --behaviour data", "stores no behaviour_log_probs"),
    ("frobnicate", "unknown command 'frobnicate'"),
    ("sweep", "Missing from offrl sweep"),
    ("sweep {missing}.toml", "does not exist"),
    ("sweep {missing}.toml --backend slurm", "invalid choice 'slurm'"),
    ("sweep {missing}.toml --workers 0", "workers = 0 is out of range"),
    ("train iql --grid algo.hidden-dims=8,8", "iql.Config.hidden_dims cannot take one value per population member"),
    ("train iql --grid algo.nosuch=1,2", "iql.Config has no field 'nosuch'"),
    ("train iql --grid algo.beta=", "the grid of algo.beta is empty"),
    ("train iql --grid algo.beta=1,abc", "iql.Config.beta value 'abc' is not a number"),
    ("train iql --grid algo.beta=-1,2", "iql.Config.beta = -1.0 is out of range"),
    ("train td3bc --grid algo.policy-freq=1.5", "td3bc.Config.policy_freq value '1.5' is not an int"),
    ("train iql --grid steps=10,20", "only the algorithm's fields (algo.FIELD) can vary"),
    ("train iql --dataset {dataset} --grid algo.batch-size=8,16", "iql.Config.batch_size changes array shapes"),
    ("train awr --dataset {dataset} --grid algo.discount=0.9,0.99", "awr.Config.discount is read on the host"),
]


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{stderr}"
    assert "Traceback" not in stderr
    return lines[0]


@pytest.mark.parametrize("argv, expected", WRONG, ids=[w[0] for w in WRONG])
def test_a_wrong_invocation_is_one_line_and_status_2(argv, expected, files, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("OFFRL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("OFFRL_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("OFFRL_ZOO", str(tmp_path / "zoo"))
    status = cli.main(argv.format(**files).split())
    err = capsys.readouterr().err
    assert status == 2, err
    line = _one_line(err)
    assert line.startswith(f"offrl {argv.split()[0]}") and ": error: " in line, line
    assert expected in line, line
    assert not (tmp_path / "runs").exists()  # nothing trained


UNICODE_BOX = """\
╭─ Value error ─────────────────────────────────────╮
│ Error parsing --steps: invalid literal for int()  │
│ with base 10: 'abc'                               │
│ ───────────────────────────────────────────────── │
│ For full helptext, see offrl train iql --help     │
╰───────────────────────────────────────────────────╯"""
PLAIN_BOX = """\
 Required options
 ----------------------------------------
  Missing from offrl eval:
      STR
          Run folder. (required)
  ----------------------------------------
  For full helptext, run:
"""


def test_tyro_boxes_become_one_line():
    from offrl.usage import one_line

    assert one_line(UNICODE_BOX) == "--steps: invalid literal for int() with base 10: 'abc'"
    assert one_line(PLAIN_BOX) == "Required options: Missing from offrl eval: STR Run folder. (required)"


def test_every_subcommand_has_a_wrong_invocation_in_the_table():
    tested = {argv.split()[0] for argv, _ in WRONG}
    assert set(cli.COMMANDS) <= tested, set(cli.COMMANDS) - tested


def test_a_bug_keeps_its_traceback(monkeypatch):
    """Only user errors are caught: an internal error (here a RuntimeError in `offrl algos`) propagates."""
    def broken(argv):
        raise RuntimeError("an internal bug")

    monkeypatch.setattr(cli, "cmd_algos", broken)
    with pytest.raises(RuntimeError, match="an internal bug"):
        cli.main(["algos"])


@pytest.mark.parametrize("argv", [
    "train iql --steps 0", "train cql_discrete --dataset {dataset}", "eval",  # fit's options, the data, tyro's parse
])
def test_the_real_process_exits_2_with_one_line(argv, files, tmp_path):
    env = {**os.environ, "OFFRL_HOME": str(tmp_path / "home"), "OFFRL_RUNS": str(tmp_path / "runs"), "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "-m", "offrl", *argv.format(**files).split()], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert _one_line(proc.stderr).startswith(f"offrl {argv.split()[0]}: error: ")
