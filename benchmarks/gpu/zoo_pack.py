"""Pack the snapshots of GPU zoo runs that `offrl zoo export` may pick, actor parameters only.

    python benchmarks/gpu/zoo_pack.py RUNS_ROOT OUT_DIR [--keep-seeds 2]

RUNS_ROOT holds ENV/seed-S run folders of `offrl zoo train ENV --seeds N`. Per env, the runs with
the best training-time evaluations are kept (``--keep-seeds``); of each, every snapshot up to 150k
env steps (medium and series candidates), every snapshot between 10 % and 60 % of the run's best
return, and the 5 best snapshots (expert candidates), each rewritten with the actor parameters
alone (what export reads). One ENV.tar per env in OUT_DIR, plus the runs' logs.
"""

import argparse
import io
import json
import tarfile
from pathlib import Path

import numpy as np

from offrl.checkpoint import load_checkpoint, save_checkpoint


def cards_of(run: Path) -> list[dict]:
    cards = []
    for p in sorted(run.glob("policy-*.json")):
        try:
            card = json.loads(p.read_text())
        except json.JSONDecodeError:  # cut by the time limit while written
            continue
        if card.get("return_mean") is not None and (run / card["policy_file"]).exists():
            cards.append(card)
    return cards


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("out")
    ap.add_argument("--keep-seeds", type=int, default=2)
    args = ap.parse_args()
    root, out = Path(args.root), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for env_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        runs = {run: cards_of(run) for run in sorted(env_dir.glob("seed-*"))}
        runs = {r: c for r, c in runs.items() if c}
        score = lambda r: float(np.mean(sorted(c["return_mean"] for c in runs[r])[-3:]))
        ranked = sorted(runs, key=score, reverse=True)
        for r in ranked:
            best = max(c["return_mean"] for c in runs[r])
            print(f"{env_dir.name}/{r.name}: {len(runs[r])} snapshots, last {runs[r][-1]['env_steps']} steps, "
                  f"best {best:.1f}, mean of top 3 {score(r):.1f}")
        with tarfile.open(out / f"{env_dir.name}.tar", "w") as tar:
            for r in ranked[: args.keep_seeds]:
                cards = runs[r]
                low, best = cards[0]["return_mean"], max(c["return_mean"] for c in cards)
                top = {c["policy_file"] for c in sorted(cards, key=lambda c: c["return_mean"])[-5:]}
                keep = [c for c in cards if c["env_steps"] <= 150_000 or c["policy_file"] in top
                        or 0.1 <= (c["return_mean"] - low) / max(best - low, 1e-9) <= 0.6]
                for c in keep:
                    state, keys, meta = load_checkpoint(r / c["policy_file"])
                    tmp = out / "_tmp.msgpack"
                    save_checkpoint(tmp, {"actor": {"params": state["actor"]["params"]}}, keys, meta)
                    tar.add(tmp, arcname=f"{env_dir.name}/{r.name}/{c['policy_file']}")
                    tar.add(r / c["policy_file"].replace(".msgpack", ".json"), arcname=f"{env_dir.name}/{r.name}/{c['policy_file'].replace('.msgpack', '.json')}")
                    tmp.unlink()
                for log in ("config.json", "train.csv", "eval.csv"):
                    if (r / log).exists():
                        tar.add(r / log, arcname=f"{env_dir.name}/{r.name}/{log}")
                print(f"  packed {r.name}: {len(keep)} snapshots")
            for r in ranked[args.keep_seeds:]:  # the other seeds' curves, for the record
                for log in ("train.csv", "eval.csv"):
                    if (r / log).exists():
                        tar.add(r / log, arcname=f"{env_dir.name}/{r.name}/{log}")
        print(f"{out / (env_dir.name + '.tar')}: {(out / (env_dir.name + '.tar')).stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
