"""The over-estimation diagnostic: Q(s0, pi(s0)) against the discounted return actually obtained."""

from __future__ import annotations

import re

import jax
import numpy as np
import pytest

import offrl
from offrl.algos import iql
from offrl.cli import main
from offrl.envs import make_env
from offrl.evaluate import evaluate
from offrl.logger import read_jsonl

import browser
from conftest import small_config


def test_discounted_return_matches_a_manual_rollout():
    """evaluate(discount=...) sums discount**t * reward_transform(r_t) per episode, from the logged start state."""
    def policy(obs):
        return np.clip(obs[..., 2:3] * 0.5, -2, 2)  # a fixed feedback law, (P, E, 1)

    res = evaluate(policy, "Pendulum-v1", episodes=3, seed=5, discount=0.9, reward_transform=lambda r: 2 * r + 1)[0]
    for j in range(3):
        env = make_env("Pendulum-v1")
        obs, _ = env.reset(seed=5 + j)
        np.testing.assert_allclose(res["initial_observations"][j], obs, rtol=1e-6)
        total, w, done = 0.0, 1.0, False
        while not done:
            obs, r, term, trunc, _ = env.step(policy(obs[None, None].astype(np.float32))[0, 0])
            total += w * (2 * r + 1)
            w *= 0.9
            done = term or trunc
        assert res["discounted_returns"][j] == pytest.approx(total, rel=1e-9)
    assert "discounted_returns" not in evaluate(policy, "Pendulum-v1", episodes=1)[0]


def test_fit_logs_q_estimate_and_realised_return(tmp_path):
    """Every evaluation of a Q-based algorithm logs the critic's start-state value; it equals q_value recomputed."""
    ds = offrl.load_dataset("pendulum-random")
    config = small_config(offrl.algos.get_algo("iql"))
    result = offrl.fit(config, ds, steps=400, chunk=200, eval_interval=200, eval_episodes=2, seeds=2,
                       run_dir=tmp_path / "iql", progress=False, plot=False)
    rows = read_jsonl(tmp_path / "iql" / "eval.jsonl")
    assert [r["step"] for r in rows] == [200, 400]
    last = rows[-1]
    assert last["q_ratio"] == pytest.approx(last["q_estimate"] / last["discounted_return"])
    # recompute: the critic at the evaluation's start states (reset seeds 10000 + j) and the deterministic action
    starts = np.stack([make_env("Pendulum-v1").reset(seed=10_000 + j)[0] for j in range(2)]).astype(np.float32)
    agent = offrl.load_agent(result.run_dir)
    per_seed = []
    for i in range(2):
        state = jax.tree.map(lambda x: x[i], agent.states)
        obs = agent.transforms.normalize_obs(starts)
        actions = iql.act(agent.config, state, obs, jax.random.PRNGKey(0), True)
        per_seed.append(float(np.mean(iql.q_value(agent.config, state, obs, actions))))
    np.testing.assert_allclose(last["per_seed_q_estimate"], per_seed, rtol=1e-4, atol=1e-4)
    assert last["q_estimate"] == pytest.approx(np.mean(per_seed), rel=1e-4, abs=1e-4)
    # the realised return is in the algorithm's reward units
    assert last["per_seed_discounted_return"][0] < 0  # Pendulum's rewards are negative


@pytest.fixture(scope="module")
def small_runs(tmp_path_factory):
    """Two tiny runs with evaluations: one with a critic (SAC), one without (BC)."""
    ds = offrl.load_dataset("pendulum-random")
    folder = tmp_path_factory.mktemp("runs")
    runs = []
    for algo in ("sac_offline", "bc"):
        config = small_config(offrl.algos.get_algo(algo))
        runs.append(offrl.fit(config, ds, steps=200, chunk=100, eval_interval=100, eval_episodes=1,
                              run_dir=folder / algo, progress=False, plot=False).run_dir)
    return runs


def test_report_draws_one_figure_for_several_runs(small_runs, tmp_path, capsys):
    runs = small_runs
    assert "q_estimate" in read_jsonl(runs[0] / "eval.jsonl")[0]
    assert "q_estimate" not in read_jsonl(runs[1] / "eval.jsonl")[0]  # BC has no critic
    out = tmp_path / "fig.png"
    assert main(["report", str(runs[0]), str(runs[1]), "--out", str(out)]) == 0
    assert out.stat().st_size > 10_000
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    assert "has no eval.jsonl" in capsys.readouterr().err


def test_report_html_page_in_a_headless_browser(small_runs, tmp_path, capsys):
    """`offrl report --html`: one self-contained page that a browser renders without console errors, with the
    evaluation table, the over-estimation figure, the learning curves and the config of every run."""
    out = tmp_path / "page" / "report.html"
    assert main(["report", "--html", *map(str, small_runs), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    source = out.read_text()
    parts = browser.assert_self_contained(source)
    assert len(parts.images) == 3  # the over-estimation figure and one learning-curve figure per run
    for uri in parts.images:
        assert browser.png_image(uri).shape[1] >= 500
    evaluation = parts.tables[0]
    assert evaluation[0][:3] == ["run", "updates", "normalised score"]
    last = [read_jsonl(r / "eval.jsonl")[-1] for r in small_runs]
    assert [row[0] for row in evaluation[1:]] == ["sac_offline (pendulum-random)", "bc (pendulum-random)"]
    for row, ev in zip(evaluation[1:], last):
        assert row[1] == "200" and row[2] == f"{ev['normalized_score']:.1f} ± {ev['normalized_score_std']:.1f}"
    assert evaluation[1][6] == f"{last[0]['q_estimate']:.2f}" and evaluation[2][6] == "–"  # BC has no critic
    # each run's config: field by field (a field changed from its default shows the default) and as JSON
    configs = [t for t in parts.tables if t[0] == ["field", "value", "default"]]
    assert len(configs) == 2
    assert ["batch_size", "32", "256"] in configs[0] and ["discount", "0.99", ""] in configs[0]
    assert source.count('"algo": "sac_offline"') == 1 and source.count('"algo": "bc"') == 1

    shown = browser.render(out, tmp_path / "browser")
    assert shown.console == []
    rendered = browser.parse(shown.dom)
    assert rendered.tables[0] == evaluation and rendered.images == parts.images  # the browser built the same page
    # The screenshot shows the evaluation table (text at the top) and the over-estimation figure, pixel for
    # pixel as embedded; the same page without its figures, as a control, shows the text but almost no colour
    # (the figures' lines and legends are the page's only coloured pixels).
    assert browser.ink_share(shown.screenshot[:300]) > 0.02
    figure = browser.png_image(parts.images[0])
    where = browser.locate(shown.screenshot, figure)
    assert where is not None and where[0] > 150, where  # below the title and the table
    bare = tmp_path / "bare.html"
    bare.write_text(re.sub(r"<img [^>]*>", "", source))
    control = browser.render(bare, tmp_path / "browser-control")
    assert control.console == [] and browser.locate(control.screenshot, figure) is None
    assert browser.coloured_share(shown.screenshot) > 4 * browser.coloured_share(control.screenshot)
