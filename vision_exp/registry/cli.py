"""``python -m vision_exp.registry``: list, show, promote, roll back and compare model versions.

The store is ``--tracking-uri``, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db`` in the
working directory (where ``python -m vision_exp.train`` writes by default).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from vision_exp.errors import VisionExpError
from vision_exp.registry.model_registry import ModelRegistry, best_of, lifecycle_tag
from vision_exp.registry.tables import compare_table, models_table, version_table, versions_table

# Wide enough for the tables when the output is a file or a pipe (a terminal sets its own width).
_PIPE_WIDTH = 140


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="python -m vision_exp.registry",
        description="The model lifecycle on the MLflow registry: roles are aliases "
        "(models:/NAME@production), history is kept in version tags.",
    )
    root.add_argument(
        "--tracking-uri",
        help="MLflow store (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)",
    )
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    listing = commands.add_parser("list", help="registered models, or the versions of MODEL")
    listing.add_argument("model", nargs="?", metavar="MODEL")
    listing.add_argument("--metric", default="test_acc", help="metric column (default test_acc)")

    show = commands.add_parser("show", help="who holds each alias, or one version in full")
    show.add_argument("model", metavar="MODEL")
    show.add_argument("ref", nargs="?", metavar="VERSION|@ALIAS")

    promote = commands.add_parser("promote", help="give ALIAS to VERSION, archiving its holder")
    promote.add_argument("model", metavar="MODEL")
    promote.add_argument("ref", metavar="VERSION")
    promote.add_argument("alias", metavar="ALIAS")
    promote.add_argument("--reason", default="promoted by hand", help="recorded on the version")

    rollback = commands.add_parser("rollback", help="give ALIAS back to its previous holder")
    rollback.add_argument("model", metavar="MODEL")
    rollback.add_argument("alias", metavar="ALIAS")
    rollback.add_argument("--to", metavar="VERSION", help="roll back to this version instead")

    compare = commands.add_parser("compare", help="versions side by side on their runs' metrics")
    compare.add_argument("model", metavar="MODEL")
    compare.add_argument("refs", nargs="+", metavar="VERSION|@ALIAS")
    compare.add_argument("--metric", default="test_acc", help="rank by this (default test_acc)")
    return root


def _aliases_table(registry: ModelRegistry, name: str) -> Table:
    model = registry.model(name)
    table = Table(title=f"{name}: aliases")
    for column in ("alias", "version", "since", "previous", "reason"):
        table.add_column(column)
    for alias, number in sorted(model.aliases.items()):
        tags = registry.client.get_model_version(name, str(number)).tags
        previous = tags.get(lifecycle_tag(alias, "previous"))
        table.add_row(
            f"@{alias}",
            f"v{number}",
            tags.get(lifecycle_tag(alias, "since"), "-"),
            f"v{previous}" if previous else "-",
            tags.get(lifecycle_tag(alias, "reason"), "-"),
        )
    return table


def run(args: argparse.Namespace, console: Console) -> None:
    registry = ModelRegistry(args.tracking_uri)
    if args.command == "list":
        if args.model is None:
            console.print(models_table(registry.models()))
        else:
            summaries = [registry.summary(v) for v in registry.versions(args.model)]
            console.print(versions_table(args.model, summaries, args.metric))
    elif args.command == "show":
        if args.ref is None:
            console.print(_aliases_table(registry, args.model))
        else:
            console.print(version_table(registry.summary(registry.version(args.model, args.ref))))
    elif args.command == "promote":
        console.print(registry.promote(args.model, args.ref, args.alias, args.reason).describe())
    elif args.command == "rollback":
        console.print(registry.rollback(args.model, args.alias, args.to).describe())
    else:
        summaries = registry.compare(args.model, args.refs)
        console.print(compare_table(args.model, summaries, args.metric))
        best = best_of(summaries, args.metric)
        if best is not None:
            console.print(f"best on {args.metric}: v{best.version.version}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    console = Console(width=None if sys.stdout.isatty() else _PIPE_WIDTH)
    try:
        run(args, console)
    except VisionExpError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0
