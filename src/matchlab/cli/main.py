"""``matchlab VERB``: argument parsing, dispatch, and one-line errors with an exit code.

Every verb is idempotent; a problem prints one line naming it and what to do,
and exits 1 (``--verbose`` adds the services' log tails); usage errors exit 2,
a missing prerequisite 3.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from matchlab.cli import images, report, stack_verbs, trading
from matchlab.errors import MatchlabError, PrerequisiteError, UsageError
from matchlab.settings import UP, add_options
from matchlab.stack.spec import Topology

EXIT_ERROR = 1
EXIT_USAGE = 2  # as argparse's own usage errors
EXIT_PREREQUISITE = 3


def build_parser() -> argparse.ArgumentParser:
    # Accepted before or after the verb (SUPPRESS: a verb's parser must not reset what the main one read).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--reports-dir", type=Path, default=argparse.SUPPRESS,
                        help="where stack.json, the PID registry and logs live (default: reports)")
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="on errors, add the services' log tails")
    p = argparse.ArgumentParser(prog="matchlab", description="Operate the matching-engine stack by hand.",
                                parents=[common])
    subparsers = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    class Verbs:  # every verb takes the common options too
        @staticmethod
        def add_parser(name: str, **kw) -> argparse.ArgumentParser:
            return subparsers.add_parser(name, parents=[common], **kw)

    verbs = Verbs()

    up = verbs.add_parser("up", help="bring the stack up, print its endpoints, write stack.json")
    add_options(up.add_argument, UP)  # the rows of the option table pytest reads too
    up.add_argument("--topology", choices=[Topology.SINGLE.value, Topology.MULTI.value], default=Topology.MULTI.value,
                    help="single: shard a; multi: shards a, b, c behind the gateway (default)")
    up.add_argument("--foreground", action="store_true", help="stay until Ctrl-C, then tear down")
    up.set_defaults(run=stack_verbs.up)

    verbs.add_parser("status", help="each service: PID, state, health, endpoint").set_defaults(run=stack_verbs.status)
    verbs.add_parser("down", help="stop what `up` started (and reap leftovers)").set_defaults(run=stack_verbs.down)

    broker = verbs.add_parser("broker", help="pause or resume the broker (SIGSTOP / SIGCONT)")
    broker.add_argument("action", choices=("pause", "resume"))
    broker.set_defaults(run=stack_verbs.broker)
    for verb, text in (("kill", "crash a service (SIGKILL)"), ("restart", "start a service again, same ports")):
        sub = verbs.add_parser(verb, help=text)
        sub.add_argument("service", help="e.g. me-shard-a, me-relay-a (local: a shard's event relay), edge-gateway, "
                                         "prometheus")
        sub.set_defaults(run=getattr(stack_verbs, verb))

    order = verbs.add_parser("order", help="send one order (through the gateway when there is one)")
    order.add_argument("symbol", help="e.g. TEST-ASSET-A")
    order.add_argument("side", type=str.upper, choices=("BUY", "SELL"))
    order.add_argument("type", type=str.upper, choices=("LIMIT", "MARKET"))
    order.add_argument("quantity", type=int)
    order.add_argument("price", type=int, nargs="?", help="LIMIT orders only")
    order.set_defaults(run=trading.order)

    book = verbs.add_parser("book", help="show a symbol's book, depth per price level")
    book.add_argument("symbol")
    book.add_argument("--levels", type=int, default=10, help="levels per side (default: 10)")
    book.set_defaults(run=trading.book)

    images.add_parser(verbs)

    rep = verbs.add_parser("report", help="re-render an earlier run's verdicts from its results.json")
    rep.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    rep.add_argument("--html", type=Path, metavar="FILE", help="also write a self-contained HTML summary")
    rep.set_defaults(run=report.render)
    return p


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `matchlab status | head` ends quietly
    args = build_parser().parse_args(argv)
    args.reports_dir = getattr(args, "reports_dir", Path("reports")).resolve()
    args.verbose = getattr(args, "verbose", False)
    try:
        return args.run(args) or 0
    except KeyboardInterrupt:
        return 130
    except MatchlabError as exc:
        text = str(exc)
        first = text.splitlines()[0] if text else type(exc).__name__
        if isinstance(exc, PrerequisiteError):  # one line per missing prerequisite, each saying how to install it
            for line in text.splitlines():
                print(f"matchlab {args.verb}: {line}", file=sys.stderr)
            return EXIT_PREREQUISITE
        print(f"matchlab {args.verb}: {first}", file=sys.stderr)
        if args.verbose:
            rest = text.splitlines()[1:]
            if rest:
                print("\n".join(rest), file=sys.stderr)
            for name, tail in stack_verbs.log_tails(args.reports_dir).items():
                print(f"--- {name} (last lines)\n{tail}", file=sys.stderr)
        elif len(text.splitlines()) > 1:
            print("(more with --verbose)", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, UsageError) else EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
