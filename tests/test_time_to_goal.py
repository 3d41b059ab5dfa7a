"""Time to the goal in `offrl.evaluate.evaluate`: the step at which ``info["success"]`` first holds."""

import gymnasium as gym
import numpy as np

from offrl.evaluate import evaluate


class _Line(gym.Env):
    """A point on a line starting at ``start``; each step moves it by sign(action); success while x >= 3;
    the episode only ends at the time limit (so success can come and go, as in the maze)."""

    observation_space = gym.spaces.Box(-100.0, 100.0, (1,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self, start: int = 0):
        self.start = start

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x = self.start + (seed or 0) % 2  # even reset seeds start at `start`, odd ones one step closer
        return np.array([self.x], np.float32), {}

    def step(self, action):
        self.x += 1 if float(action[0]) > 0 else -1
        return np.array([self.x], np.float32), float(self.x >= 3), False, False, {"success": self.x >= 3}


gym.register("OffrlTestLine-v0", entry_point=_Line, max_episode_steps=8)


def test_success_steps_is_the_first_step_the_goal_holds():
    # forward: start 0 reaches x = 3 after 3 steps, start 1 after 2; then it stays (reward 1 per step)
    fwd = evaluate(lambda o: np.ones(o.shape[:2] + (1,)), "OffrlTestLine-v0", episodes=4, seed=0)[0]
    assert fwd["success_steps"] == [3, 2, 3, 2]
    assert fwd["success_step_mean"] == 2.5 and fwd["success_rate"] == 1.0
    # start 2 -> +1 -> 3 (success at step 1) -> -1 -> 2 -> +1 -> 3 ...: first success at step 1, counted once
    flip = {"t": 0}

    def wiggle(o):
        flip["t"] += 1
        return np.full(o.shape[:2] + (1,), 1.0 if flip["t"] % 2 else -1.0)

    res = evaluate(wiggle, "OffrlTestLine-v0", episodes=1, seed=0, env_kwargs={"start": 2})[0]
    assert res["success_steps"] == [1] and res["return_mean"] == 4.0


def test_no_success_gives_none():
    back = evaluate(lambda o: -np.ones(o.shape[:2] + (1,)), "OffrlTestLine-v0", episodes=2, seed=0)[0]
    assert back["success_steps"] == [None, None]
    assert back["success_step_mean"] is None and back["success_rate"] == 0.0
