"""Read a ``.rrd`` back with Rerun's own reader, as plain Python rows per entity."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any


def read_rrd(path: str | Path, durations_ns: bool = False) -> dict[str, list[dict[str, Any]]]:
    """Entity path -> rows; each row maps component/timeline column names to values, plus ``static``.

    ``durations_ns``: duration timelines as integer nanoseconds, not ``timedelta`` (which cannot
    hold e.g. 1/30 s)."""
    import pyarrow as pa

    from rerun.chunk import RrdReader

    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for chunk in RrdReader(path).stream():
        batch = chunk.to_record_batch()
        names = [n for n in batch.schema.names if n not in ("rerun.controls.RowId", "log_time", "log_tick")]
        columns = {}
        for n in names:
            column = batch.column(n)
            if durations_ns and pa.types.is_duration(column.type):
                column = column.cast(pa.int64())
            columns[n] = column.to_pylist()
        for i in range(chunk.num_rows):
            row = {n: columns[n][i] for n in names}
            row["static"] = chunk.is_static
            rows[chunk.entity_path].append(row)
    return dict(rows)


def component(rows: list[dict[str, Any]], name: str) -> list[Any]:
    """Values of one component (e.g. ``Transform3D:translation``) over the rows that carry it."""
    return [r[name] for r in rows if r.get(name) is not None]


def blueprint_views(path: str | Path) -> set[tuple[str, str]]:
    """{(view kind, origin)} of the blueprint stored in the file."""
    from rerun.chunk import RrdReader

    reader = RrdReader(path)
    (blueprint,) = reader.blueprints()
    views = set()
    for chunk in reader.stream(store=blueprint):
        batch = chunk.to_record_batch()
        if "ViewBlueprint:class_identifier" in batch.schema.names:
            kind = batch.column("ViewBlueprint:class_identifier").to_pylist()[0][0]
            origin = batch.column("ViewBlueprint:space_origin").to_pylist()[0][0]
            views.add((kind, origin))
    return views
