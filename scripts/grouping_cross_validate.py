#!/usr/bin/env python3
"""Leave-one-system-out scores of the grouping: how it does on a system it was not fitted to.

Usage: python3 scripts/grouping_cross_validate.py ../shared/loghub-2k
           [--bench target/release/faultline-bench] [--grid 0.5,0.55,...,0.95] [--json OUT]

The grouping has one fitted number a run can choose, the miner's similarity threshold. For
each value of the grid, `faultline-bench grouping --similarity S` groups every system and the
shared `loghub_eval.py` scores it (GA, FGA). Then:

* all-in: the value with the best mean GA over all systems, and that mean (fitted and scored on
  the same systems), beside the built-in default's;
* leave-one-system-out: for each system, the value with the best mean GA over the *other*
  systems is chosen and the held-out system is scored with it; the mean of these held-out
  scores is what to expect on a system the value was not chosen on.

Ties go to the value closest to the default. Hand-written rules (masks, the few-values rule)
were fitted by people looking at these same systems; this cannot hold them out, so the
held-out figure is an upper bound for truly unseen logs.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

DEFAULT = 0.8


def scores(bench, data, evaluator, similarity, work):
    """{system: {"GA": …, "FGA": …}} for one similarity."""
    out = os.path.join(work, f"s{similarity:.3f}")
    subprocess.run(
        [bench, "grouping", data, "--out", out, "--rounds", "1", "--similarity", str(similarity)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    report = os.path.join(work, f"s{similarity:.3f}.json")
    subprocess.run(
        [sys.executable, evaluator, data, "--pred", out, "--json", report],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    with open(report) as f:
        return json.load(f)["datasets"]


def mean(values):
    values = list(values)
    return sum(values) / len(values)


def best(grid, table, systems):
    """The similarity with the best mean GA over `systems` (ties: closest to the default)."""
    return max(grid, key=lambda s: (round(mean(table[s][x]["GA"] for x in systems), 9), -abs(s - DEFAULT)))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", help="the loghub-2k folder")
    parser.add_argument("--bench", default=os.path.join(here, "..", "target", "release", "faultline-bench"))
    parser.add_argument("--evaluator", default=os.path.join(here, "..", "..", "shared", "tools", "loghub_eval.py"))
    parser.add_argument("--grid", default=",".join(f"{0.5 + 0.05 * i:.2f}" for i in range(10)))
    parser.add_argument("--json", help="also write every score here")
    args = parser.parse_args()
    grid = sorted({float(s) for s in args.grid.split(",")} | {DEFAULT})

    with tempfile.TemporaryDirectory() as work:
        table = {s: scores(args.bench, args.data, args.evaluator, s, work) for s in grid}
    systems = sorted(set.intersection(*(set(t) for t in table.values())))
    if len(systems) < 2:
        sys.exit("need at least two scored systems")

    fitted = best(grid, table, systems)
    print(f"{'system':<12} {'chosen':>7} {'held-out GA':>12} {'FGA':>6}   {'all-in GA':>9} {'default GA':>10}")
    held_out = {}
    for system in systems:
        others = [x for x in systems if x != system]
        chosen = best(grid, table, others)
        held_out[system] = {"similarity": chosen, **{k: table[chosen][system][k] for k in ("GA", "FGA")}}
        print(
            f"{system:<12} {chosen:>7.2f} {held_out[system]['GA']:>12.3f} {held_out[system]['FGA']:>6.3f}"
            f"   {table[fitted][system]['GA']:>9.3f} {table[DEFAULT][system]['GA']:>10.3f}"
        )
    summary = {
        "grid": grid,
        "all_in": {
            "similarity": fitted,
            "GA": mean(table[fitted][x]["GA"] for x in systems),
            "FGA": mean(table[fitted][x]["FGA"] for x in systems),
        },
        "default": {
            "similarity": DEFAULT,
            "GA": mean(table[DEFAULT][x]["GA"] for x in systems),
            "FGA": mean(table[DEFAULT][x]["FGA"] for x in systems),
        },
        "leave_one_system_out": {
            "GA": mean(h["GA"] for h in held_out.values()),
            "FGA": mean(h["FGA"] for h in held_out.values()),
            "per_system": held_out,
        },
    }
    a, d, h = summary["all_in"], summary["default"], summary["leave_one_system_out"]
    print(f"all-in (similarity {a['similarity']:.2f} fitted on all {len(systems)}): GA {a['GA']:.3f} FGA {a['FGA']:.3f}")
    print(f"default (similarity {DEFAULT:.2f}): GA {d['GA']:.3f} FGA {d['FGA']:.3f}")
    print(f"leave-one-system-out, mean of {len(systems)} held-out scores: GA {h['GA']:.3f} FGA {h['FGA']:.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"summary": summary, "scores": table}, f, indent=2)


if __name__ == "__main__":
    main()
