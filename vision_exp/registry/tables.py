"""The registry as tables a person reads in a terminal."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone

from mlflow.entities.model_registry import ModelVersion, RegisteredModel
from rich.table import Table

from vision_exp.registry.model_registry import REPORT_METRICS, VersionSummary, best_of


def _time(millis: int | None) -> str:
    if not millis:
        return "-"
    return datetime.fromtimestamp(millis / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M")


def _aliases(version: ModelVersion) -> str:
    return ", ".join(f"@{alias}" for alias in sorted(version.aliases)) or "-"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _lifecycle(version: ModelVersion) -> str:
    """``production: active (after v1)``, one line per alias the version ever held."""
    roles: dict[str, dict[str, str]] = {}
    for key, value in version.tags.items():
        parts = key.split(".")
        if len(parts) == 3 and parts[0] == "lifecycle":
            roles.setdefault(parts[1], {})[parts[2]] = value
    lines = []
    for alias, fields in sorted(roles.items()):
        after = f" (after v{fields['previous']})" if "previous" in fields else ""
        lines.append(f"{alias}: {fields.get('state', '?')}{after}")
    return "\n".join(lines) or "-"


def models_table(models: Sequence[RegisteredModel]) -> Table:
    table = Table(title="Registered models")
    for column in ("model", "latest", "aliases", "updated"):
        table.add_column(column)
    for model in models:
        latest = max((int(v.version) for v in model.latest_versions), default=None)
        aliases = ", ".join(f"@{a}=v{v}" for a, v in sorted(model.aliases.items())) or "-"
        table.add_row(
            model.name,
            f"v{latest}" if latest else "-",
            aliases,
            _time(model.last_updated_timestamp),
        )
    return table


def versions_table(name: str, summaries: Sequence[VersionSummary], metric: str) -> Table:
    table = Table(title=f"{name}: versions")
    for column in ("version", "aliases", "lifecycle", "dataset", "model", metric, "decision"):
        table.add_column(column)
    for summary in summaries:
        version = summary.version
        table.add_row(
            f"v{version.version}",
            _aliases(version),
            _lifecycle(version),
            summary.dataset or "-",
            summary.model or "-",
            _number(summary.metric(metric)),
            version.tags.get("registry.decision", "-"),
        )
    return table


def version_table(summary: VersionSummary) -> Table:
    version = summary.version
    table = Table(title=f"{version.name} v{version.version}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    rows = [
        ("aliases", _aliases(version)),
        ("lifecycle", _lifecycle(version)),
        ("created", _time(version.creation_timestamp)),
        ("run", version.run_id or "-"),
        ("source", version.source or "-"),
        ("dataset", summary.dataset or "-"),
        ("model", summary.model or "-"),
        *((key, f"{value:.6g}") for key, value in sorted(summary.metrics.items())),
        ("decision", version.tags.get("registry.decision", "-")),
        ("reason", version.tags.get("registry.reason", "-")),
        ("description", version.description or "-"),
        ("load with", f"mlflow.pytorch.load_model('models:/{version.name}/{version.version}')"),
    ]
    for key, value in rows:
        table.add_row(key, value)
    return table


def compare_table(name: str, summaries: Sequence[VersionSummary], metric: str) -> Table:
    """One row per version, the ranking metric first, the best one marked."""
    best = best_of(summaries, metric)
    others = [m for m in REPORT_METRICS if m != metric]
    table = Table(title=f"{name}: versions compared on {metric}")
    for column in ("version", "aliases", "dataset", "model", metric, *others, ""):
        table.add_column(column)
    for summary in summaries:
        table.add_row(
            f"v{summary.version.version}",
            _aliases(summary.version),
            summary.dataset or "-",
            summary.model or "-",
            _number(summary.metric(metric)),
            *(_number(summary.metric(m)) for m in others),
            "best" if best is not None and summary is best else "",
        )
    return table
