#!/usr/bin/env python3
"""Drain3 on the same Loghub-2k Content lines as `faultline-bench grouping`, for the speed ratio.

Usage: python3 scripts/drain3_bench.py ../shared/loghub-2k [--out PRED_DIR]   (pip install drain3)

Each system's Content lines are taken with its log_format (as faultline does) and fed to a fresh
drain3 TemplateMiner configured with that system's masks from formats.json (each mask a `<*>`
instruction) and Drain3's default depth and similarity. The time counted is add_log_message
alone, over all systems, in the fastest of --rounds rounds (a fresh miner each round, as
`faultline-bench grouping --rounds` does); lines/s is printed. With --out, predictions are written in the format
loghub_eval.py reads, so Drain3's grouping can be scored too.
"""
import argparse
import csv
import json
import os
import re
import time

from drain3 import TemplateMiner
from drain3.masking import MaskingInstruction
from drain3.template_miner_config import TemplateMinerConfig


def layout(fmt):
    """A log_format as a regular expression (the syntax in formats.json)."""
    pattern, rest = "^", fmt
    while "<" in rest and ">" in rest[rest.index("<"):]:
        i = rest.index("<")
        j = rest.index(">", i)
        pattern += re.sub(r" +", r"\\s+", rest[:i]) + "(?P<%s>.*?)" % rest[i + 1:j]
        rest = rest[j + 1:]
    return re.compile(pattern + re.sub(r" +", r"\\s+", rest) + "$")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("--out")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    formats = json.load(open(os.path.join(args.data, "formats.json")))["datasets"]
    systems = []
    for system, spec in sorted(formats.items()):
        path = os.path.join(args.data, spec["log_file"])
        if not os.path.isfile(path):
            continue
        regex = layout(spec["log_format"])
        contents = []
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                line = line.strip()
                m = regex.match(line)
                contents.append(m.group("Content") if m else line)
        systems.append((system, spec, contents))
    best = None
    for _ in range(max(args.rounds, 1)):
        secs, results = 0.0, []
        for system, spec, contents in systems:
            config = TemplateMinerConfig()
            config.masking_instructions = [MaskingInstruction(m, "*") for m in spec["masks"]]
            config.profiling_enabled = False
            miner = TemplateMiner(config=config)
            started = time.perf_counter()
            ids = [miner.add_log_message(c)["cluster_id"] for c in contents]
            secs += time.perf_counter() - started
            results.append((system, contents, miner, ids))
        best = secs if best is None else min(best, secs)
    total_lines = sum(len(contents) for _, _, contents in systems)
    for system, contents, miner, ids in results:
        if args.out:
            os.makedirs(args.out, exist_ok=True)
            templates = {c.cluster_id: c.get_template() for c in miner.drain.clusters}
            with open(os.path.join(args.out, system + ".csv"), "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["LineId", "group", "template"])
                for i, cid in enumerate(ids, 1):
                    w.writerow([i, cid, templates[cid]])
        print(f"{system:<10} {len(contents):>6} lines {len(miner.drain.clusters):>5} groups")
    print(f"drain3: {total_lines} lines in {best * 1000:.1f} ms (fastest of {args.rounds} rounds): "
          f"{total_lines / best:.0f} lines/s")


if __name__ == "__main__":
    main()
