"""``python -m tests.campaign.mutants {list,check,run}`` (see ``tests/campaign/README.md``).

    python -m tests.campaign.mutants list
    python -m tests.campaign.mutants check
    python -m tests.campaign.mutants run [--ids A,B] [--family F] [--sample N] [--seed S]
        [--timeout SECONDS] [--out results.jsonl] [--workdir DIR] [--baseline] [--nice N]

``run`` exits with 0 when every mutant run was killed, 1 when one survived, timed out or
failed to run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .catalogue import FAMILIES, MUTANTS
from .runner import (
    DEFAULT_TIMEOUT,
    DEFAULT_WORKDIR,
    Workspace,
    campaign,
    count_occurrences,
    select,
    summarize,
)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.campaign.mutants")
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("list", help="the catalogue, by family")
    sub.add_parser("check", help="every search string occurs exactly once in this tree")
    run = sub.add_parser("run", help="run mutants against their tests")
    run.add_argument("--ids", help="comma-separated mutant ids")
    run.add_argument("--family", action="append", choices=FAMILIES)
    run.add_argument("--sample", type=int, help="this many mutants, spread over the families")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                     help="seconds per mutant run")
    run.add_argument("--out", type=Path, help="append results here as JSON lines")
    run.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    run.add_argument("--nice", type=int, default=10)
    run.add_argument("--baseline", action="store_true",
                     help="run each selection on the unmutated copy (it must pass)")
    args = parser.parse_args(argv)

    if args.what == "list":
        for family in FAMILIES:
            members = [m for m in MUTANTS if m.family == family]
            print(f"{family} ({len(members)})")
            for m in members:
                run = " ".join([*(f"{k}={v}" for k, v in m.env.items()), *m.tests])
                print(f"  {m.id:32} {m.file}: {m.description}")
                print(f"  {'':32} {run}" + (f" -k {m.k!r}" if m.k else ""))
        print(f"{len(MUTANTS)} mutants")
        return 0
    if args.what == "check":
        bad = [(m.id, n) for m in MUTANTS if (n := count_occurrences(m)) != 1]
        for mid, n in bad:
            print(f"{mid}: search string found {n} times")
        print(f"{len(MUTANTS) - len(bad)}/{len(MUTANTS)} search strings occur exactly once")
        return 1 if bad else 0

    ids = set(args.ids.split(",")) if args.ids else None
    mutants = select(ids, args.family, args.sample, args.seed)
    started = time.monotonic()
    ws = Workspace(args.workdir, nice=args.nice)
    ws.prepare()
    print(f"{len(mutants)} mutants; copy at {ws.tree} (its fastconv checked: imported from "
          f"the copy)")
    results = campaign(mutants, ws, args.out, args.timeout, args.baseline)
    summary = summarize(results)
    summary["wall_seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(summary, indent=1))
    if args.baseline:
        print(f"{summary['survived']} of {summary['total']} selections pass on the unmutated "
              f"copy")
        return 0 if summary["survived"] == summary["total"] else 1
    if summary["kill_rate"] is not None:
        print(f"kill rate {summary['kill_rate']:.1%} ({summary['killed']} of "
              f"{summary['killed'] + summary['survived']}); survivors: "
              f"{', '.join(summary['survivors']) or 'none'}")
    return 0 if summary["killed"] == summary["total"] else 1


if __name__ == "__main__":
    sys.exit(main())
