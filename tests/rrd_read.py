"""Read a ``.rrd`` back with Rerun's own reader, as plain Python rows per entity; bounds of the logged geometry."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np


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


# ---------------------------------------------------------------- geometry bounds


def _latest(rows: list[dict[str, Any]], name: str) -> Any:
    """The last logged value of a component (static rows first, then temporal rows in file order)."""
    values = [r[name] for r in rows if r["static"] and r.get(name) is not None]
    values += [r[name] for r in rows if not r["static"] and r.get(name) is not None]
    return values[-1] if values else None


def quaternion_matrix(xyzw: Any) -> np.ndarray:
    """3x3 rotation of a unit quaternion x,y,z,w (Rerun's order)."""
    x, y, z, w = np.asarray(xyzw, dtype=np.float64) / np.linalg.norm(xyzw)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def entity_transform(rows: list[dict[str, Any]]) -> np.ndarray:
    """4x4 (column vectors) parent_from_entity of the entity's latest ``Transform3D``: T @ R @ S @ M."""
    matrix = np.eye(4)
    translation = _latest(rows, "Transform3D:translation")
    quaternion = _latest(rows, "Transform3D:quaternion")
    scale = _latest(rows, "Transform3D:scale")
    mat3 = _latest(rows, "Transform3D:mat3x3")
    linear = np.eye(3)
    if quaternion is not None:
        linear = linear @ quaternion_matrix(quaternion[0])
    if scale is not None:
        linear = linear @ np.diag(scale[0])
    if mat3 is not None:
        linear = linear @ np.asarray(mat3[0], dtype=np.float64).reshape(3, 3).T  # stored column-major
    matrix[:3, :3] = linear
    if translation is not None:
        matrix[:3, 3] = translation[0]
    return matrix


def world_transform(entities: dict[str, list[dict[str, Any]]], path: str) -> np.ndarray:
    """world_from_entity: the latest transforms of the entity and of every ancestor, composed root first."""
    parts = path.strip("/").split("/")
    matrix = np.eye(4)
    for depth in range(1, len(parts) + 1):
        ancestor = "/" + "/".join(parts[:depth])
        if ancestor in entities:
            matrix = matrix @ entity_transform(entities[ancestor])
    return matrix


def _instances(rows: list[dict[str, Any]], kind: str, count: int, centers: str) -> tuple[np.ndarray, np.ndarray]:
    """(rotations (n, 3, 3), centers (n, 3)) of an archetype's instance poses; missing ones are identity/zero."""
    quats = _latest(rows, f"{kind}:quaternions") or [[0.0, 0.0, 0.0, 1.0]]
    offsets = _latest(rows, f"{kind}:{centers}") or [[0.0, 0.0, 0.0]]
    rotations = np.stack([quaternion_matrix(quats[min(i, len(quats) - 1)]) for i in range(count)])
    return rotations, np.array([offsets[min(i, len(offsets) - 1)] for i in range(count)], dtype=np.float64)


def local_bounds(rows: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """Exact axis-aligned (min, max) of what the entity draws, in its own frame (instance poses applied)."""
    boxes, ellipsoids = _latest(rows, "Boxes3D:half_sizes"), _latest(rows, "Ellipsoids3D:half_sizes")
    lows, highs = [], []
    for kind, half_sizes in (("Boxes3D", boxes), ("Ellipsoids3D", ellipsoids)):
        if half_sizes is None:
            continue
        half = np.asarray(half_sizes, dtype=np.float64)
        rotations, centers = _instances(rows, kind, len(half), "centers")
        # |R| h for a box; the norm of each row of R diag(h) for an ellipsoid.
        reach = np.einsum("nij,nj->ni", np.abs(rotations), half) if kind == "Boxes3D" else np.linalg.norm(
            rotations * half[:, None, :], axis=2
        )
        lows.append(centers - reach), highs.append(centers + reach)
    for kind, centers_name in (("Cylinders3D", "centers"), ("Capsules3D", "translations")):
        lengths = _latest(rows, f"{kind}:lengths")
        if lengths is None:
            continue
        length = np.asarray(lengths, dtype=np.float64)
        radius = np.asarray(_latest(rows, f"{kind}:radii"), dtype=np.float64)[:, None]
        rotations, centers = _instances(rows, kind, len(length), centers_name)
        axis = rotations[:, :, 2]  # each shape's +Z
        if kind == "Cylinders3D":  # centred; a disc of radius r reaches r sqrt(1 - a_i^2) along axis i
            reach = np.abs(axis) * length[:, None] / 2 + radius * np.sqrt(np.clip(1 - axis**2, 0, None))
            lows.append(centers - reach), highs.append(centers + reach)
        else:  # from its origin to origin + length along +Z, spheres at both ends
            ends = np.stack([centers, centers + axis * length[:, None]])
            lows.append(ends.min(axis=0) - radius), highs.append(ends.max(axis=0) + radius)
    vertices = _latest(rows, "Mesh3D:vertex_positions")
    if vertices is not None:
        points = np.asarray(vertices, dtype=np.float64)
        lows.append(points.min(axis=0, keepdims=True)), highs.append(points.max(axis=0, keepdims=True))
    positions = _latest(rows, "Points3D:positions")
    if positions is not None:
        points = np.asarray(positions, dtype=np.float64)
        radii = np.asarray(_latest(rows, "Points3D:radii") or [0.0], dtype=np.float64)[:, None]
        lows.append(points - radii), highs.append(points + radii)
    if not lows:
        raise ValueError(f"no drawn geometry in {sorted({k for r in rows for k in r})}")
    return np.concatenate(lows).min(axis=0), np.concatenate(highs).max(axis=0)


def world_bounds(entities: dict[str, list[dict[str, Any]]], path: str) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned world (min, max) of the entity's local bounds box under the logged transforms.

    The same construction as USD's ``ComputeWorldBound(...).ComputeAlignedRange()``: the local box's
    corners transformed, then their range.
    """
    low, high = local_bounds(entities[path])
    corners = np.array([[(low, high)[(c >> axis) & 1][axis] for axis in range(3)] for c in range(8)])
    world = world_transform(entities, path)
    moved = corners @ world[:3, :3].T + world[:3, 3]
    return moved.min(axis=0), moved.max(axis=0)


def assert_usd_world_bounds(
    entities: dict[str, list[dict[str, Any]]], path: str, prim: Any, scale: float = 1.0
) -> None:
    """What is drawn at ``path`` has the world bounds USD computes for ``prim``, x ``scale`` (metres per unit)."""
    from pxr import Usd, UsdGeom

    usd = UsdGeom.Imageable(prim).ComputeWorldBound(Usd.TimeCode.Default(), UsdGeom.Tokens.default_)
    aligned = usd.ComputeAlignedRange()
    low, high = world_bounds(entities, path)
    np.testing.assert_allclose(low, np.array(aligned.GetMin()) * scale, atol=1e-5, err_msg=path)
    np.testing.assert_allclose(high, np.array(aligned.GetMax()) * scale, atol=1e-5, err_msg=path)
