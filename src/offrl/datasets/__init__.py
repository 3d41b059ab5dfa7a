"""Dataset generation: the built-in datasets, their reference scores, and the registration of their names.

The layer above :mod:`offrl.data` (datasets, files, the registry), :mod:`offrl.envs` (environments
and controllers) and :mod:`offrl.evaluate` (the evaluation loop, which measures reference scores):

* :mod:`offrl.datasets.builtin`: ``pendulum-{random,medium,expert,mixed}``;
* :mod:`offrl.datasets.maze`: ``maze-{umaze,medium,large}-{sparse,dense,stitch}``;
* :mod:`offrl.datasets.gridworld`: ``gridworld-stitch``;
* :mod:`offrl.datasets.discrete`: ``{cartpole,acrobot,lunarlander}-{random,medium,expert,mixed}``;
* :mod:`offrl.datasets.locomotion`: ``{hopper,halfcheetah,walker2d}-*`` from the behaviour-policy zoo.

``offrl.data`` imports nothing of this package (nor of ``offrl.envs``): its registry imports it by
name (``offrl.data.registry.BUILTINS_PACKAGE``) the first time a registered name is needed and calls
:func:`register_builtin_datasets`, so ``offrl.data.load_dataset("pendulum-mixed")`` works after
``import offrl.data`` alone. The same hook gives ``offrl.data`` the two environment services it needs
without importing ``offrl.envs``: :func:`make_env` (``to_minari`` records the env spec) and
:func:`position_panel` (``offrl data plot`` draws a maze dataset's visited positions).
"""

from __future__ import annotations

from typing import Any, Callable

from offrl.envs import make_env

__all__ = ["make_env", "position_panel", "register_builtin_datasets"]


def register_builtin_datasets(add: Callable[[str, Callable[..., Any], str], None]) -> None:
    """Call ``add(name, maker, description)`` for every built-in dataset (``maker(seed, size) -> Dataset``)."""
    from offrl.datasets.builtin import BUILTIN_DATASETS
    from offrl.datasets.discrete import register_discrete_datasets
    from offrl.datasets.gridworld import register_gridworld_datasets
    from offrl.datasets.locomotion import register_locomotion_datasets
    from offrl.datasets.maze import register_maze_datasets

    for name, (maker, description) in BUILTIN_DATASETS.items():
        add(name, maker, description)
    register_maze_datasets(add)
    register_discrete_datasets(add)
    register_gridworld_datasets(add)
    register_locomotion_datasets(add)


def position_panel(dataset: Any) -> Callable[[Any], None] | None:
    """``draw(ax)`` of the visited positions on the maze map for a dataset of offrl's PointMaze envs, else None."""
    from offrl.envs.maze import draw_positions, maze_of_env_id

    maze = maze_of_env_id(dataset.info.env_id)
    if maze is None:
        return None
    return lambda ax: draw_positions(ax, dataset, maze)
