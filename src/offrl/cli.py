"""The ``offrl`` command line.

    offrl train [ALGO] [--dataset NAME_OR_PATH] [--steps N] [--seeds N] [--algo.FIELD VALUE ...]
    offrl train --resume RUN_DIR
    offrl eval CHECKPOINT [--episodes N]
    offrl export RUN_DIR [--format onnx|stablehlo] [--out FILE]
    offrl algos
    offrl zoo train ENV [--env-steps N] | export RUN_DIR
    offrl report RUN_DIR [RUN_DIR ...] [--out PNG] [--html]
    offrl finetune RUN_DIR [--env ENV] [--steps N] [--offline-ratio R | --symmetric]
    offrl sweep SPEC [--backend local|ray] [--ray-address ADDR] [--html]
    offrl bench SUITE [--algos A,B] [--seeds N] [--steps N] [--datasets D1,D2] [--peer NAME] [--html] [--redraw]
    offrl data list | make NAME [--seed S] [--size N] | info NAME_OR_PATH | plot NAME_OR_PATH [--out PNG]
    offrl ope RUN_DIR [RUN_DIR ...] [--dataset NAME] [--estimators is,wis,pdis,wpdis,dr,wdr,fqe,mb] | select RUN_DIR ... [--by fqe]
    offrl dynamics train DATASET [--out PATH] [--max-epochs N] [--max-minutes M] | eval DATASET [--dynamics PATH]

Options of ``train`` come from typed dataclasses through tyro, so ``offrl train iql --help`` lists
every field of IQL's ``Config`` with its docstring.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import tyro

from offrl.config import Checked, integer, number, sizes, text
from offrl.usage import UsageError, parse_args

DEFAULT_ALGO = "iql"
DEFAULT_DATASET = "pendulum-mixed"
COMMANDS = {
    "train": "train an algorithm on a dataset (default: iql on the built-in pendulum-mixed data)",
    "eval": "evaluate a checkpoint in its environment",
    "export": "write a run's policy as a standalone ONNX or StableHLO file with a JSON card (`offrl export RUN_DIR --format onnx`)",
    "algos": "list the algorithms",
    "zoo": "behaviour policies: `offrl zoo train ENV` (online SAC), `offrl zoo export RUN_DIR`",
    "report": "the over-estimation figure of run folders: critic Q(s0, pi(s0)) vs realised return (`offrl report RUN_DIR ...`)",
    "finetune": "continue an offline agent online, mixing its dataset with new data (`offrl finetune RUN_DIR --steps N`)",
    "bench": "train algorithms on a benchmark suite, write a score table (`offrl bench SUITE --algos A,B`)",
    "sweep": "a hyperparameter sweep from a TOML/JSON spec, trained as populations, merged into one table (`offrl sweep SPEC`)",
    "data": "datasets: `offrl data list | make NAME | info NAME | plot NAME`",
    "ope": "off-policy evaluation of runs on a dataset (IS, DR, FQE, model-based): `offrl ope RUN_DIR ... --dataset NAME` | `select RUN_DIR ...`",
    "dynamics": "model-based RL's dynamics ensemble: `offrl dynamics train DATASET` (cached by the dataset's checksum) | `eval DATASET`",
}


@dataclass
class LoopArgs:
    """Options of the training loop."""

    dataset: str = DEFAULT_DATASET
    """Built-in dataset name (see `offrl data list`) or path of an .hdf5 (D4RL layout) / .npz file."""
    steps: int = 20_000
    """Gradient updates per seed (the built-in demo's budget; the papers use 1M)."""
    seed: int = 0
    """Seed of the first agent; agent i uses seed + i."""
    seeds: int = 1
    """Independent agents trained together in one compiled call (see --seed-strategy)."""
    chunk: int = 1000
    """Updates per compiled call (lax.scan length); metrics are fetched once per chunk."""
    eval_interval: Optional[int] = 5000
    """Evaluate every this many updates (None: only at the end)."""
    eval_episodes: int = 10
    """Evaluation episodes per seed."""
    checkpoint_interval: Optional[int] = None
    """Checkpoint every this many updates (default: a tenth of the run)."""
    run_dir: Optional[str] = None
    """Run folder (default: runs/ALGO-DATASET-TIME)."""
    resume: Optional[str] = None
    """Continue the killed run in this folder from its last checkpoint (other options are taken from it)."""
    normalize_observations: Optional[bool] = None
    """Normalise observations with the dataset's mean/std (default: the algorithm's paper setting)."""
    reward_scaling: Optional[Literal["none", "iql_locomotion", "minus_one"]] = None
    """Reward transform (default: the algorithm's paper setting)."""
    tensorboard: bool = False
    """Also write TensorBoard event files (needs tensorboardX)."""
    progress: bool = True
    """Show a progress bar."""
    seed_strategy: Literal["auto", "vmap", "map"] = "auto"
    """How seeds share a compiled call: vmap, map (one after another; spread over the devices when JAX_NUM_CPU_DEVICES=N gives N), auto (map on CPU, vmap on GPU)."""
    grid: tuple[str, ...] = ()
    """A population: algo.FIELD=V1,V2,... (numeric fields; several give their product), each member trained with --seeds seeds in the same compiled calls."""


def cmd_algos(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):
        print("usage: offrl algos\n\n  list the registered algorithms (train one with `offrl train ALGO`)")
        return 0
    if argv:
        raise UsageError(f"`offrl algos` takes no arguments (got {' '.join(argv)!r}); see `offrl train ALGO --help` for one algorithm's options")
    from rich.console import Console
    from rich.table import Table

    from offrl.algos import list_algos

    table = Table(title="offrl algorithms")
    table.add_column("name", style="bold")
    table.add_column("description")
    for name, algo in list_algos().items():
        table.add_row(name, algo.description)
    Console().print(table)
    return 0


def cmd_data(argv: list[str]) -> int:
    from rich.console import Console
    from rich.table import Table

    from offrl.data.registry import dataset_path, list_datasets

    sub = argv[0] if argv else "list"
    if sub in ("-h", "--help"):
        print("usage: offrl data {list,make,info,plot} ...\n\n"
              "  list                 built-in datasets and whether each is on disk (default)\n"
              "  make NAME            generate a built-in dataset into the cache (see `offrl data make --help`)\n"
              "  info NAME|FILE       sizes, episode returns and lengths, ends, reference scores\n"
              "  plot NAME|FILE       a PNG histogram of the episode returns")
        return 0
    if sub == "make":
        return _data_make(argv[1:])
    if sub in ("info", "plot"):
        from offrl.data.inspect import cli_info, cli_plot

        return (cli_info if sub == "info" else cli_plot)(argv[1:])
    if sub != "list":
        raise UsageError(f"unknown data command {sub!r}; valid: list, make, info, plot")
    table = Table(title="built-in datasets (made locally on first use)")
    for col in ("name", "on disk", "description"):
        table.add_column(col)
    for name, description in list_datasets().items():
        table.add_row(name, "yes" if dataset_path(name).exists() else "no", description)
    Console().print(table)
    return 0


@dataclass
class DataMakeArgs(Checked):
    """Generate a built-in dataset locally and write it (atomically) as D4RL-layout HDF5."""

    _label = ""  # messages name the option: "size = 0 is out of range: ..."

    name: tyro.conf.Positional[str]
    """Dataset name (see `offrl data list`)."""
    seed: int = integer(0, ge=0)
    """Generator seed: the same name and seed give the same file."""
    size: Optional[int] = integer(None, ge=1, optional=True)
    """Transitions (default: the dataset's own size)."""
    out: Optional[str] = None
    """Output file (.hdf5 or .npz; default: the cache folder $OFFRL_HOME/datasets)."""


def _data_make(argv: list[str]) -> int:
    import time

    from rich.console import Console

    from offrl.data import Dataset
    from offrl.data.registry import make_dataset

    args = parse_args(DataMakeArgs, argv, "offrl data make")
    t0 = time.perf_counter()
    path = make_dataset(args.name, seed=args.seed, size=args.size, out=args.out)
    dataset = Dataset.load(path)
    Console().print(f"wrote {path}: {dataset.num_transitions:,} transitions, {dataset.num_episodes:,} episodes "
                    f"in {time.perf_counter() - t0:.1f} s")
    return 0


@dataclass(frozen=True)
class DynamicsTrainArgs(Checked):
    """Train the dynamics ensemble of a dataset; model-based runs on that dataset then reuse it."""
    _label = ""  # messages name the option

    dataset: tyro.conf.Positional[str]
    """Built-in dataset name or file."""
    out: Optional[str] = text(None, optional=True)
    """Output path (PATH.msgpack + PATH.json; default: $OFFRL_HOME/dynamics/<dataset checksum>-<settings>, found automatically)."""
    hidden_dims: tuple[int, ...] = sizes((200, 200, 200, 200))
    """Hidden layers of each member."""
    members: int = integer(7, ge=1)
    """Ensemble members."""
    elites: int = integer(5, ge=1)
    """Elites (lowest held-out MSE) used for rollouts."""
    max_epochs: Optional[int] = integer(None, ge=1, optional=True)
    """Budget in epochs (None: until the early stop)."""
    max_minutes: Optional[float] = number(None, gt=0, optional=True)
    """Budget in minutes (None: none)."""
    holdout_ratio: float = number(0.2, gt=0, lt=1)
    """Share of the data held out (at most 1000 transitions)."""
    seed: int = integer(0)
    """Seed of the split, the initialisation and the shuffles."""


@dataclass(frozen=True)
class DynamicsEvalArgs(Checked):
    """Per-horizon open-loop error of a dynamics model against the dataset's own trajectories."""
    _label = ""  # messages name the option

    dataset: tyro.conf.Positional[str]
    """Built-in dataset name or file."""
    dynamics: Optional[str] = text(None, optional=True)
    """Model file (default: the cached model of this dataset with the default settings)."""
    horizon: int = integer(10, ge=1)
    """Longest horizon reported."""
    num_starts: int = integer(256, ge=1)
    """Start transitions (each with at least `horizon` steps left in its episode)."""
    seed: int = integer(0)
    """Seed of the start transitions."""


def cmd_dynamics(argv: list[str]) -> int:
    from rich.console import Console

    from offrl.data import load_dataset as load_dynamics_dataset
    from offrl.dynamics import DynamicsConfig, cache_path, save_dynamics, train_dynamics
    from offrl.data.integrity import array_checksum

    if not argv or argv[0] not in ("train", "eval"):
        raise UsageError("usage: offrl dynamics train DATASET [--out PATH] | eval DATASET [--dynamics PATH]")
    console = Console()
    if argv[0] == "train":
        args = parse_args(DynamicsTrainArgs, argv[1:], "offrl dynamics train")
        dataset = load_dynamics_dataset(args.dataset)
        config = DynamicsConfig(hidden_dims=tuple(args.hidden_dims), num_members=args.members, num_elites=args.elites,
                                max_epochs=args.max_epochs, max_minutes=args.max_minutes, holdout_ratio=args.holdout_ratio,
                                seed=args.seed)
        checksum = array_checksum(dataset)
        model, card = train_dynamics(dataset, config, log=console.print)
        path = save_dynamics(args.out or cache_path(checksum, config), model, card, checksum)
        console.print(f"wrote {path} (+ .json): {card['epochs']} epochs ({card['stopped_by']}), "
                      f"{card['seconds_per_epoch']:.2f} s/epoch, elites {card['elites']}")
        for i, (mse, nll) in enumerate(zip(card["holdout_mse"], card["holdout_nll"])):
            console.print(f"  member {i}: held-out MSE {mse:.5f}  NLL {nll:.4f}{'  (elite)' if i in card['elites'] else ''}")
        return 0
    args = parse_args(DynamicsEvalArgs, argv[1:], "offrl dynamics eval")
    from offrl.dynamics.model import find_or_train, load_dynamics, open_loop_errors

    dataset = load_dynamics_dataset(args.dataset)
    if args.dynamics:
        model, _ = load_dynamics(args.dynamics, array_checksum(dataset))
    else:
        model, _ = find_or_train(dataset, DynamicsConfig(), log=console.print)
    errors = open_loop_errors(model, dataset, args.horizon, args.num_starts, args.seed)
    for h, err in enumerate(errors, start=1):
        console.print(f"horizon {h:3d}: state MSE {err['state_mse']:.5f}  reward MSE {err['reward_mse']:.5f}")
    return 0


def cmd_train(argv: list[str]) -> int:
    from offrl.algos import get_algo

    algo_name = DEFAULT_ALGO
    if argv and not argv[0].startswith("-"):
        algo_name, argv = argv[0], argv[1:]
    if "--resume" in argv or any(a.startswith("--resume=") for a in argv):
        # The algorithm is stored in the run; parse with it so `--help` and fields make sense.
        from offrl.checkpoint import load_checkpoint_or_previous

        idx = next(i for i, a in enumerate(argv) if a.startswith("--resume"))
        resume_dir = argv[idx].split("=", 1)[1] if "=" in argv[idx] else (argv[idx + 1] if idx + 1 < len(argv) else None)
        if resume_dir is None:
            raise UsageError("--resume needs a run folder")
        algo_name = load_checkpoint_or_previous(resume_dir, warn=False)[2]["algo"]
    algo = get_algo(algo_name)
    _check_option_names(argv, algo)
    args_cls = dataclasses.make_dataclass(
        "TrainArgs",
        [("algo", algo.config_cls, dataclasses.field(default_factory=algo.config_cls))],
        bases=(LoopArgs,),
    )
    args_cls.__doc__ = f"Train {algo.name}: {algo.description}."
    args = parse_args(args_cls, argv, f"offrl train {algo.name}")

    from offrl.train import fit

    population = None
    if args.grid and args.resume is None:
        from offrl.population import parse_grid

        population = parse_grid(algo.config_cls, args.grid)
    result = fit(
        args.algo, args.dataset, steps=args.steps, seed=args.seed, seeds=args.seeds, chunk=args.chunk,
        eval_interval=args.eval_interval, eval_episodes=args.eval_episodes,
        checkpoint_interval=args.checkpoint_interval, run_dir=args.run_dir, resume=args.resume,
        normalize_observations=args.normalize_observations, reward_scaling=args.reward_scaling,
        tensorboard=args.tensorboard, progress=args.progress, seed_strategy=args.seed_strategy, population=population,
    )
    if result.population is not None:
        _print_members(result, f"{algo.name} population after {result.step:,} updates")
    else:
        _print_summary(result.run_dir, result.final_eval, f"{algo.name} after {result.step:,} updates")
    return 0


def _print_members(result, title: str) -> None:
    """One line per population member: its values and its seeds' final score (mean ± 95% CI)."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=title)
    for name in ("member", *result.population.names, "seeds", "return (mean ± 95% CI)", "normalised score"):
        table.add_column(name)
    for row in result.members:
        cells = [str(row["member"]), *(f"{row[n]:g}" for n in result.population.names), str(row["seeds"])]
        cells.append(f"{row['return_mean']:.1f} ± {row['return_ci95']:.1f}" if "return_mean" in row else "-")
        cells.append(f"{row['normalized_score']:.1f} ± {row['normalized_score_ci95']:.1f}" if row.get("normalized_score") is not None else "-")
        table.add_row(*cells)
    console.print(table)
    console.print(f"run folder: {result.run_dir}")
    for name in ("population.csv", "curves.png", "eval.csv", "checkpoint.msgpack"):
        if (Path(result.run_dir) / name).exists():
            console.print(f"  {name}: {Path(result.run_dir) / name}")


def _check_option_names(argv: list[str], algo) -> None:
    """Reject an unknown ``--FIELD`` or ``--algo.FIELD`` with the list of valid ones."""
    import difflib

    loop_fields = [f.name for f in dataclasses.fields(LoopArgs)]
    algo_fields = [f.name for f in dataclasses.fields(algo.config_cls)]
    for token in argv:
        if not token.startswith("--") or token in ("--help",):
            continue
        name = token[2:].split("=", 1)[0].replace("-", "_")
        is_algo = name.startswith("algo.")
        field_name = name[len("algo."):] if is_algo else name
        valid = algo_fields if is_algo else loop_fields
        if field_name in valid or (field_name.startswith("no_") and field_name[3:] in valid):
            continue
        guess = difflib.get_close_matches(field_name, valid, n=1)
        hint = f" (did you mean --{'algo.' if is_algo else ''}{guess[0].replace('_', '-')}?)" if guess else ""
        where = f"{algo.name}'s config" if is_algo else "the training loop"
        flags = ", ".join(("--algo." if is_algo else "--") + v.replace("_", "-") for v in valid)
        raise UsageError(f"unknown option {token.split('=')[0]!r} for {where}{hint}; valid options: {flags}")


def _print_summary(run_dir: Path, results: list[dict], title: str) -> None:
    import numpy as np
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if results:
        table = Table(title=title)
        table.add_column("seed")
        table.add_column("return (mean ± std)")
        has_score = results[0].get("normalized_score") is not None
        if has_score:
            table.add_column("normalised score")
        for i, r in enumerate(results):
            cells = [str(i), f"{r['return_mean']:.1f} ± {r['return_std']:.1f}"]
            if has_score:
                cells.append(f"{r['normalized_score']:.1f}")
            table.add_row(*cells)
        if len(results) > 1:
            cells = ["all", f"{np.mean([r['return_mean'] for r in results]):.1f}"]
            if has_score:
                scores = [r["normalized_score"] for r in results]
                cells.append(f"{np.mean(scores):.1f} ± {np.std(scores):.1f}")
            table.add_row(*cells, style="bold")
        console.print(table)
    console.print(f"run folder: {run_dir}")
    for name in ("curves.png", "eval.csv", "train.csv", "checkpoint.msgpack"):
        if (Path(run_dir) / name).exists():
            console.print(f"  {name}: {Path(run_dir) / name}")


def cmd_eval(argv: list[str]) -> int:
    @dataclass
    class EvalArgs(Checked):
        """Evaluate a checkpoint in the environment of the dataset it was trained on."""

        _label = ""

        checkpoint: tyro.conf.Positional[str]
        """Run folder or checkpoint.msgpack file."""
        episodes: int = integer(10, ge=1)
        """Episodes per seed."""
        seed: int = integer(10_000, ge=0)
        """Seed of the first evaluation episode (episode j uses seed + j)."""
        env: Optional[str] = None
        """Evaluate in this Gymnasium env instead of the dataset's."""
        target_returns: Optional[str] = text(None, optional=True)
        """Returns to ask a return-conditioned policy (dt, rvs) for, separated by commas (1000,2000,3000): writes
        target_returns.csv and target_returns.png (achieved against requested return) into the run folder."""

    args = parse_args(EvalArgs, argv, "offrl eval")
    import numpy as np

    from offrl.agent import load_agent
    from offrl.evaluate import evaluate

    targets = None
    if args.target_returns is not None:
        from offrl.targets import parse_targets

        try:
            targets = parse_targets(args.target_returns)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    agent = load_agent(args.checkpoint)
    if targets is not None and not agent.algo.conditioned_on_return(agent.config):
        from offrl.algos import list_algos

        names = ", ".join(n for n, a in list_algos().items() if a.return_conditioned)
        raise UsageError(f"this {agent.algo.name} run is not conditioned on a return; --target-returns applies to: {names} "
                         "(rvs with conditioning 'return')")
    env_id = args.env or agent.dataset_info.env_id
    if env_id is None:
        raise UsageError("the checkpoint's dataset names no environment; pass --env ENV_ID")
    info = agent.dataset_info
    n = agent.num_seeds

    def run(policy, stateful=False):
        return evaluate(
            policy, env_id, episodes=args.episodes, num_policies=n, seed=args.seed,
            env_kwargs=(info.env_kwargs or None) if args.env is None else None,
            ref_min_score=info.ref_min_score if args.env is None else None,
            ref_max_score=info.ref_max_score if args.env is None else None, obs_layout=info.obs_layout, stateful=stateful,
        )

    title = f"{agent.algo.name} at {agent.step:,} updates on {env_id}"
    if agent.algo.stateful:  # every seed's envs carry their histories on the device
        from offrl.algos import DataSpec
        from offrl.train import default_target_return, make_policy

        def carried(target):
            policy = make_policy(agent.algo, agent.config, agent.transforms, DataSpec(**agent.meta["spec"]), target)
            return run(lambda *obs: policy(agent.states, *obs), stateful=True)

        if targets is not None:
            return _eval_target_returns(agent, carried, targets, Path(args.checkpoint), title)
        results = carried(default_target_return(agent.config, agent.meta) or 0.0)
    else:
        def policy(obs):
            return np.stack([agent.act(obs[i], seed_index=i) for i in range(n)])

        results = run(policy)
    _print_summary(Path(args.checkpoint), results, title)
    return 0


def _eval_target_returns(agent, evaluate_target, targets: list[float], checkpoint: Path, title: str) -> int:
    """``offrl eval --target-returns``: one evaluation per requested return, the table and figure written."""
    from rich.console import Console
    from rich.table import Table

    from offrl.targets import far_outside_message, sweep, write_target_returns

    data_range = agent.return_range
    if data_range is not None:
        message = far_outside_message(targets, *data_range)
        if message:
            print(f"offrl eval: warning: {message}", file=sys.stderr)
    rows = sweep(evaluate_target, targets)
    run_dir = checkpoint if checkpoint.is_dir() else checkpoint.parent
    csv_path, png_path = write_target_returns(run_dir, rows, data_range, title)
    table = Table(title=f"{title}: achieved against requested return")
    for column in ("requested", "seed", "achieved (mean ± std)"):
        table.add_column(column)
    for row in rows:
        table.add_row(f"{row['target_return']:g}", str(row["seed_index"]), f"{row['return_mean']:.1f} ± {row['return_std']:.1f}")
    console = Console()
    console.print(table)
    if data_range is not None:
        console.print(f"dataset's episode returns: [{data_range[0]:g}, {data_range[1]:g}]")
    console.print(f"  {csv_path.name}: {csv_path}\n  {png_path.name}: {png_path}")
    return 0


def cmd_export(argv: list[str]) -> int:
    from offrl.export import main as export_main

    return export_main(argv)


def cmd_zoo(argv: list[str]) -> int:
    from offrl.zoo import main as zoo_main

    return zoo_main(argv)


def cmd_finetune(argv: list[str]) -> int:
    from offrl.finetune import main as finetune_main

    return finetune_main(argv)


def cmd_report(argv: list[str]) -> int:
    from offrl.report import main as report_main

    return report_main(argv)


def cmd_sweep(argv: list[str]) -> int:
    from offrl.sweep import main as sweep_main

    return sweep_main(argv)


def cmd_bench(argv: list[str]) -> int:
    from offrl.bench import main as bench_main

    return bench_main(argv)


def cmd_ope(argv: list[str]) -> int:
    from offrl.offpolicy import main as ope_main

    return ope_main(argv)


def user_errors() -> tuple[type[BaseException], ...]:
    """The exception types that mean a user's mistake (one line, exit 2); everything else is a bug."""
    from offrl.algos.registry import UnknownAlgorithmError
    from offrl.checkpoint import CheckpointError
    from offrl.config import ConfigError
    from offrl.data import DatasetError
    from offrl.envs import UnknownEnvError
    from offrl.dynamics import DynamicsError, TerminationError
    from offrl.envs.policies import ZooError
    from offrl.export import ExportError
    from offrl.ope import OPEError
    from offrl.sweep import SweepError
    from offrl.train import TrainingDivergedError

    return (UsageError, ConfigError, UnknownAlgorithmError, CheckpointError, DatasetError, UnknownEnvError, ZooError,
            FileNotFoundError, NotADirectoryError, IsADirectoryError, TrainingDivergedError, ExportError,
            DynamicsError, TerminationError, OPEError, SweepError)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        print("\ncommands:")
        for name, text in COMMANDS.items():
            print(f"  {name:<7} {text}")
        return 0
    command, rest = argv[0], argv[1:]
    handlers = {"train": cmd_train, "eval": cmd_eval, "algos": cmd_algos, "data": cmd_data, "zoo": cmd_zoo, "bench": cmd_bench,
                "sweep": cmd_sweep, "report": cmd_report, "finetune": cmd_finetune, "export": cmd_export,
                "dynamics": cmd_dynamics, "ope": cmd_ope}
    try:
        if command not in handlers:
            raise UsageError(f"unknown command {command!r}; valid commands: {', '.join(handlers)}")
        return handlers[command](rest)
    except user_errors() as exc:  # a user's mistake: one line, exit 2 (a bug keeps its traceback)
        print(f"offrl {command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; resume with `offrl train --resume RUN_DIR`", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
