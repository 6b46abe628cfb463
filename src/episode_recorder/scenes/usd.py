"""Log a USD stage (usd-core ``pxr``) to Rerun: geometry once, world poses of geometry prims when they change.

Every drawable prim (``Mesh``, ``Cube``, ``Sphere``, ``Capsule``, ``Cylinder``, ``Cone``, ``Plane``,
``Points``) becomes one Rerun entity at its prim path, carrying its geometry in the prim's own frame
(static, logged once) and its pose relative to the nearest drawn ancestor (for ordinary stages,
where geometry prims are leaves, that is the world pose; no parent transform is applied twice).
The stage's ``upAxis`` sets the view coordinates and ``metersPerUnit`` scales every pose to metres.

    >>> from pxr import Usd, UsdGeom
    >>> import rerun as rr
    >>> stage = Usd.Stage.CreateInMemory()
    >>> _ = UsdGeom.Cube.Define(stage, "/World/box")
    >>> logger = UsdRerunLogger(stage, recording_stream=rr.RecordingStream("doc"))
    >>> logger.log_stage()
"""

from __future__ import annotations

import fnmatch
import os
import warnings
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from episode_recorder._optional import require
from episode_recorder.rerun_stream import resolve_stream

if TYPE_CHECKING:
    import rerun as rr
    from pxr import Usd

DRAWN_TYPES = ("Mesh", "Cube", "Sphere", "Capsule", "Cylinder", "Cone", "Plane", "Points")


def _pxr() -> tuple[Any, Any, Any, Any]:
    require("pxr", "usd", "Logging USD stages")
    from pxr import Gf, Usd, UsdGeom, UsdShade

    return Gf, Usd, UsdGeom, UsdShade


def parse_path_filter(path_filter: str | Sequence[str] | None) -> tuple[list[str], list[str]]:
    """Split glob patterns into (includes, excludes); a leading ``!`` marks an exclude.

    >>> parse_path_filter(["/World/*", "!*Grid*"])
    (['/World/*'], ['*Grid*'])
    """
    patterns = [path_filter] if isinstance(path_filter, str) else list(path_filter or [])
    includes = [p for p in patterns if not p.startswith("!")]
    excludes = [p[1:] for p in patterns if p.startswith("!") and len(p) > 1]
    return includes, excludes


def iter_drawn_prims(
    root: Usd.Prim,
    includes: Sequence[str] = (),
    excludes: Sequence[str] = (),
    stop_at: set[str] | frozenset[str] = frozenset(),
) -> Iterable[Usd.Prim]:
    """Drawable prims under ``root`` (itself included), instance proxies traversed.

    Guide-purpose and invisible prims are skipped with their subtree, and so are prims matching an
    exclude glob and prims in ``stop_at`` (paths); with include globs, only matching prims are yielded.
    """
    _, Usd, UsdGeom, _ = _pxr()
    prims = iter(Usd.PrimRange(root, Usd.TraverseInstanceProxies(Usd.PrimDefaultPredicate)))
    for prim in prims:
        path = str(prim.GetPath())
        imageable = UsdGeom.Imageable(prim)
        hidden = imageable and (
            imageable.GetPurposeAttr().Get() == UsdGeom.Tokens.guide
            or imageable.GetVisibilityAttr().Get() == UsdGeom.Tokens.invisible
        )
        if hidden or path in stop_at or any(fnmatch.fnmatchcase(path, p) for p in excludes):
            prims.PruneChildren()
            continue
        if prim.GetTypeName() not in DRAWN_TYPES:
            continue
        if includes and not any(fnmatch.fnmatchcase(path, p) for p in includes):
            continue
        yield prim


def _matrix_to_transform(matrix: Any) -> tuple[np.ndarray, np.ndarray]:
    """A Gf.Matrix4d (row vectors, translation in the last row) as (translation, 3x3 column-vector matrix)."""
    m = np.array(matrix, dtype=np.float64).reshape(4, 4)
    return m[3, :3].copy(), m[:3, :3].T.copy()


# ---------------------------------------------------------------- geometry


def triangulate(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fan-triangulate polygons: (corner indices of each triangle (T, 3), face of each triangle (T,)).

    >>> triangulate(np.array([4, 3]))[0].tolist()
    [[0, 1, 2], [0, 2, 3], [4, 5, 6]]
    """
    counts = np.asarray(counts, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    per_face = np.maximum(counts - 2, 0)
    face = np.repeat(np.arange(len(counts)), per_face)
    first_tri = np.concatenate([[0], np.cumsum(per_face)[:-1]])
    k = np.arange(len(face)) - np.repeat(first_tri, per_face) + 1
    base = starts[face]
    return np.stack([base, base + k, base + k + 1], axis=1), face


def _expand(values: np.ndarray, interpolation: str, fvi: np.ndarray, corner_face: np.ndarray) -> np.ndarray:
    """A primvar's values expanded to one per face-vertex corner."""
    if interpolation in ("vertex", "varying"):
        return values[fvi]
    if interpolation == "faceVarying":
        return values
    if interpolation == "uniform":
        return values[corner_face]
    return np.repeat(values[:1], len(fvi), axis=0)


def _primvar(prim: Usd.Prim, name: str, time: Any) -> tuple[np.ndarray | None, str]:
    _, _, UsdGeom, _ = _pxr()
    primvar = UsdGeom.PrimvarsAPI(prim).GetPrimvar(name)
    if not primvar or not primvar.HasValue():
        return None, ""
    values = primvar.ComputeFlattened(time)
    if values is None or len(values) == 0:
        return None, ""
    return np.asarray(values, dtype=np.float32), str(primvar.GetInterpolation())


def mesh_arrays(prim: Usd.Prim, time: Any) -> dict[str, Any] | None:
    """Triangle mesh of a UsdGeom.Mesh: vertex positions, triangles, optional normals/UVs/colours, face of each triangle."""
    _, _, UsdGeom, _ = _pxr()
    mesh = UsdGeom.Mesh(prim)
    points = mesh.GetPointsAttr().Get(time)
    counts = mesh.GetFaceVertexCountsAttr().Get(time)
    fvi = mesh.GetFaceVertexIndicesAttr().Get(time)
    if points is None or counts is None or fvi is None or len(points) == 0:
        return None
    points = np.asarray(points, dtype=np.float32)
    counts = np.asarray(counts, dtype=np.int64)
    fvi = np.asarray(fvi, dtype=np.int64)
    tri_corners, tri_face = triangulate(counts)
    if mesh.GetOrientationAttr().Get() == UsdGeom.Tokens.leftHanded:
        tri_corners = tri_corners[:, [0, 2, 1]]
    corner_face = np.repeat(np.arange(len(counts)), counts)

    attributes: dict[str, tuple[np.ndarray, str]] = {}
    normals, interp = _primvar(prim, "normals", time)
    if normals is None:
        raw = mesh.GetNormalsAttr().Get(time)
        if raw is not None and len(raw):
            normals, interp = np.asarray(raw, dtype=np.float32), str(mesh.GetNormalsInterpolation())
    if normals is not None:
        attributes["vertex_normals"] = (normals, interp)
    uvs, interp = _primvar(prim, "st", time)
    if uvs is not None:
        attributes["vertex_texcoords"] = (uvs, interp)
    colors, interp = _primvar(prim, "displayColor", time)
    albedo_factor = None
    if colors is not None:
        if interp == "constant":
            albedo_factor = colors[0]
        else:
            attributes["vertex_colors"] = (colors, interp)

    if all(i in ("vertex", "varying") for _, i in attributes.values()):
        # Vertices shared between faces: keep the points, index them.
        out = {"vertex_positions": points, "triangle_indices": fvi[tri_corners]}
        out.update({k: v for k, (v, _) in attributes.items()})
    else:
        # Some attribute varies per face or corner: one vertex per corner.
        out = {"vertex_positions": points[fvi], "triangle_indices": tri_corners}
        out.update({k: _expand(v, i, fvi, corner_face) for k, (v, i) in attributes.items()})
    if "vertex_texcoords" in out:
        uv = out["vertex_texcoords"].copy()
        uv[:, 1] = 1.0 - uv[:, 1]  # USD's st origin is bottom-left, Rerun's is top-left.
        out["vertex_texcoords"] = uv
    if "vertex_colors" in out:
        out["vertex_colors"] = np.clip(out["vertex_colors"], 0.0, 1.0)
    out["albedo_factor"] = albedo_factor
    out["triangle_face"] = tri_face
    return out


def _axis_rotation(axis: str) -> list[float]:
    """Quaternion (x, y, z, w) turning Rerun's +Z shape axis onto the USD ``axis``."""
    s = float(np.sqrt(0.5))
    return {"X": [0.0, s, 0.0, s], "Y": [-s, 0.0, 0.0, s]}.get(axis, [0.0, 0.0, 0.0, 1.0])


def _cone_mesh(radius: float, height: float, axis: str, segments: int = 32) -> tuple[np.ndarray, np.ndarray]:
    angles = np.linspace(0.0, 2.0 * np.pi, segments, endpoint=False)
    ring = np.stack([radius * np.cos(angles), radius * np.sin(angles), np.full(segments, -height / 2)], axis=1)
    points = np.concatenate([ring, [[0.0, 0.0, height / 2], [0.0, 0.0, -height / 2]]]).astype(np.float32)
    i = np.arange(segments)
    j = (i + 1) % segments
    side = np.stack([i, j, np.full(segments, segments)], axis=1)
    base = np.stack([j, i, np.full(segments, segments + 1)], axis=1)
    return _to_axis(points, axis), np.concatenate([side, base])


def _to_axis(points: np.ndarray, axis: str) -> np.ndarray:
    """Points built along +Z turned so that +Z becomes ``axis`` (X, Y or Z)."""
    if axis == "X":
        return points[:, [2, 0, 1]]
    if axis == "Y":
        return points[:, [1, 2, 0]]
    return points


# ---------------------------------------------------------------- materials


def _shader_input(shader: Any, names: Sequence[str]) -> Any:
    for name in names:
        shader_input = shader.GetInput(name)
        if shader_input:
            return shader_input
    return None


def _texture_path(asset: Any, layer_dir: str) -> str | None:
    if asset is None:
        return None
    path = asset.resolvedPath or asset.path
    if not path:
        return None
    if not os.path.isabs(path):
        path = os.path.join(layer_dir, path)
    return path


def _layer_dir(prim: Usd.Prim) -> str:
    for spec in prim.GetPrimStack():
        real = spec.layer.realPath
        if real:
            return os.path.dirname(real)
    return os.getcwd()


def _value_source(shader_input: Any) -> tuple[Any, Any]:
    """What drives a shader input, followed through material and node-graph inputs.

    (a shader's output, None), (None, the attribute holding the value), or (None, None) for neither.
    """
    _, _, _, UsdShade = _pxr()
    for attribute in shader_input.GetValueProducingAttributes():
        if UsdShade.Output.IsOutput(attribute):
            return UsdShade.Output(attribute), None
        if attribute.Get() is not None:
            return None, attribute
    return None, None


def _asset_input_path(shader: Any, name: str) -> str | None:
    """The file named by an asset-valued input of ``shader`` (its value, or the material input it reads)."""
    shader_input = shader.GetInput(name) if shader else None
    if not shader_input:
        return None
    _, attribute = _value_source(shader_input)
    return None if attribute is None else _texture_path(attribute.Get(), _layer_dir(attribute.GetPrim()))


def material_of(prim: Usd.Prim) -> tuple[np.ndarray | None, str | None]:
    """(diffuse RGB constant, diffuse texture file) of the material bound to ``prim`` (UsdPreviewSurface or OmniPBR).

    Connections are followed through the material's and node graphs' inputs to the shader or value behind them.
    """
    _, _, _, UsdShade = _pxr()
    material = UsdShade.MaterialBindingAPI(prim).ComputeBoundMaterial()[0]
    if not material:
        return None, None
    for context in ("", "mdl"):
        shader = material.ComputeSurfaceSource(context)[0]
        if shader:
            break
    else:
        return None, None
    diffuse = _shader_input(shader, ("diffuseColor", "diffuse_color_constant"))
    color = texture = None
    if diffuse is not None:
        output, attribute = _value_source(diffuse)
        if output is not None:  # e.g. a UsdUVTexture's rgb
            texture = _asset_input_path(UsdShade.Shader(output.GetPrim()), "file")
        elif attribute is not None:
            color = np.asarray(attribute.Get(), dtype=np.float32)[:3]
    if texture is None:  # OmniPBR
        texture = _asset_input_path(shader, "diffuse_texture")
    return color, texture


def load_texture(path: str) -> np.ndarray | None:
    """The image at ``path`` as uint8 RGB/RGBA, or None with a warning when it cannot be read."""
    try:
        from PIL import Image

        with Image.open(path) as image:
            image = image.convert("RGBA" if image.mode in ("RGBA", "LA", "P") else "RGB")
            return np.asarray(image)
    except Exception as error:  # any unreadable file: draw untextured, tell the user
        warnings.warn(f"Could not read texture {path!r} ({error}); drawing without it.", stacklevel=2)
        return None


def _rgba(color: np.ndarray | None) -> np.ndarray | None:
    if color is None:
        return None
    rgb = np.clip(np.asarray(color, dtype=np.float32)[:3], 0.0, 1.0)
    return np.round(np.append(rgb, 1.0) * 255).astype(np.uint8)


# ---------------------------------------------------------------- logging one prim


def log_prim_geometry(stream: rr.RecordingStream, entity: str, prim: Usd.Prim, time: Any) -> None:
    """Log the geometry of one drawable prim (static, in its own frame) at ``entity``."""
    import rerun as rr

    _, _, UsdGeom, UsdShade = _pxr()
    kind = prim.GetTypeName()
    color, texture_file = material_of(prim)
    display, _ = _primvar(prim, "displayColor", time)
    rgba = _rgba(color if color is not None else (display[0] if display is not None else None))

    def get(attr: str, default: float) -> float:
        value = prim.GetAttribute(attr).Get(time)
        return float(default if value is None else value)

    axis = str(prim.GetAttribute("axis").Get(time) or "Z")
    if kind == "Mesh":
        _log_mesh(stream, entity, prim, time, texture_file, rgba)
        return
    if kind == "Cube":
        size = get("size", 2.0)
        archetype: Any = rr.Boxes3D(half_sizes=[[size / 2] * 3], colors=rgba, fill_mode="solid")
    elif kind == "Sphere":
        r = get("radius", 1.0)
        archetype = rr.Ellipsoids3D(half_sizes=[[r, r, r]], colors=rgba, fill_mode="solid")
    elif kind == "Capsule":
        r, h = get("radius", 0.5), get("height", 1.0)
        quat = _axis_rotation(axis)
        start = np.array(_to_axis(np.array([[0.0, 0.0, -h / 2]]), axis)[0])
        archetype = rr.Capsules3D(lengths=[h], radii=[r], translations=[start], quaternions=[quat], colors=rgba)
    elif kind == "Cylinder":
        r, h = get("radius", 1.0), get("height", 2.0)
        archetype = rr.Cylinders3D(
            lengths=[h], radii=[r], quaternions=[_axis_rotation(axis)], colors=rgba, fill_mode="solid"
        )
    elif kind == "Cone":
        points, triangles = _cone_mesh(get("radius", 1.0), get("height", 2.0), axis)
        archetype = rr.Mesh3D(vertex_positions=points, triangle_indices=triangles, albedo_factor=rgba)
    elif kind == "Plane":
        # USD: width along x (axis Z or Y) or z (axis X); length along y (axis Z or X) or z (axis Y).
        w, length = get("width", 2.0) / 2, get("length", 2.0) / 2
        quad = np.array([[-w, -length, 0], [w, -length, 0], [w, length, 0], [-w, length, 0]], dtype=np.float32)
        if axis == "X":
            quad = quad[:, [2, 1, 0]]
        elif axis == "Y":
            quad = quad[:, [0, 2, 1]]
        normal = np.array(_to_axis(np.array([[0.0, 0.0, 1.0]]), axis)[0], dtype=np.float32)
        archetype = rr.Mesh3D(
            vertex_positions=quad,
            triangle_indices=[[0, 1, 2], [0, 2, 3], [0, 2, 1], [0, 3, 2]],  # both sides
            vertex_normals=np.tile(normal, (4, 1)),
            albedo_factor=rgba,
        )
    elif kind == "Points":
        points = prim.GetAttribute("points").Get(time)
        if points is None:
            return
        widths = prim.GetAttribute("widths").Get(time)
        radii = None if widths is None or len(widths) == 0 else np.asarray(widths, dtype=np.float32) / 2
        colors = display if display is not None and len(display) == len(points) else rgba
        archetype = rr.Points3D(np.asarray(points, dtype=np.float32), radii=radii, colors=colors)
    else:
        return
    stream.log(entity, archetype, static=True)


def _log_mesh(
    stream: rr.RecordingStream, entity: str, prim: Usd.Prim, time: Any, texture_file: str | None, rgba: Any
) -> None:
    import rerun as rr

    _, _, UsdGeom, _ = _pxr()
    arrays = mesh_arrays(prim, time)
    if arrays is None:
        return
    tri_face = arrays.pop("triangle_face")
    albedo = arrays.pop("albedo_factor")
    parts: list[tuple[str, np.ndarray, np.ndarray | None, str | None]] = []
    covered = np.zeros(len(tri_face), dtype=bool)
    for subset in UsdGeom.Subset.GetAllGeomSubsets(UsdGeom.Imageable(prim)):
        faces = np.asarray(subset.GetIndicesAttr().Get(time) or [], dtype=np.int64)
        mask = np.isin(tri_face, faces)
        covered |= mask
        color, texture = material_of(subset.GetPrim())
        parts.append((str(subset.GetPath()), mask, color, texture))
    parts.insert(0, (entity, ~covered, None, texture_file))

    for path, mask, color, texture in parts:
        if not mask.any():
            continue
        triangles = arrays["triangle_indices"][mask]
        used, remap = np.unique(triangles, return_inverse=True)
        kwargs: dict[str, Any] = {k: v[used] for k, v in arrays.items() if k != "triangle_indices"}
        kwargs["triangle_indices"] = remap.reshape(-1, 3).astype(np.uint32)
        part_rgba = _rgba(color) if color is not None else rgba
        if part_rgba is None and albedo is not None:
            part_rgba = _rgba(albedo)
        image = load_texture(texture) if texture and "vertex_texcoords" in kwargs else None
        if image is not None:
            kwargs["albedo_texture"] = image
        elif part_rgba is not None:
            kwargs["albedo_factor"] = part_rgba
        stream.log(path, rr.Mesh3D(**kwargs), static=True)


# ---------------------------------------------------------------- the logger


class UsdRerunLogger:
    """Log a USD stage to Rerun: geometry once, then the poses that changed since the last call.

    The caller sets the time on the stream (``stream.set_time(...)``), then calls ``log_stage``;
    call it per time code to animate a time-sampled stage. ``path_filter``: glob pattern(s) on prim
    paths; a leading ``!`` excludes a prim and its subtree.

        >>> from pxr import Usd, UsdGeom
        >>> import rerun as rr
        >>> stage = Usd.Stage.CreateInMemory()
        >>> _ = UsdGeom.Sphere.Define(stage, "/World/ball")
        >>> stream = rr.RecordingStream("doc")
        >>> logger = UsdRerunLogger(stage, path_filter=["/World/*", "!*Grid*"], recording_stream=stream)
        >>> for frame in range(3):
        ...     stream.set_time("frame", sequence=frame)
        ...     logger.log_stage(time_code=frame)
    """

    def __init__(
        self,
        stage: Usd.Stage,
        path_filter: str | Sequence[str] | None = None,
        recording_stream: rr.RecordingStream | None = None,
        save_path: str | os.PathLike[str] | None = None,
        application_id: str | None = None,
    ) -> None:
        _pxr()
        self.stage = stage
        self.includes, self.excludes = parse_path_filter(path_filter)
        self.stream = resolve_stream(save_path, recording_stream, application_id or "usd")
        self._geometry_logged: set[str] = set()
        self._last_pose: dict[str, np.ndarray] = {}

    def log_stage(self, time_code: float | Usd.TimeCode | None = None) -> None:
        """Log geometry not logged yet, and the poses (read at ``time_code``) that changed.

        ``time_code=None`` reads the stage's start time code when it has an authored time range,
        else each attribute's earliest value.
        """
        import rerun as rr

        _, Usd, UsdGeom, _ = _pxr()
        if time_code is None:
            stage_range = self.stage.HasAuthoredTimeCodeRange()
            time = Usd.TimeCode(self.stage.GetStartTimeCode()) if stage_range else Usd.TimeCode.EarliestTime()
        else:
            time = time_code if isinstance(time_code, Usd.TimeCode) else Usd.TimeCode(float(time_code))
        up, units = stage_axis_and_units(self.stage)
        if not self._geometry_logged:
            view = rr.ViewCoordinates.RIGHT_HAND_Y_UP if up == "Y" else rr.ViewCoordinates.RIGHT_HAND_Z_UP
            self.stream.log("/", view, static=True)
        cache = UsdGeom.XformCache(time)
        prims = list(iter_drawn_prims(self.stage.GetPseudoRoot(), self.includes, self.excludes))
        drawn = {str(p.GetPath()) for p in prims}
        for prim in prims:
            path = str(prim.GetPath())
            world = np.array(cache.GetLocalToWorldTransform(prim), dtype=np.float64).reshape(4, 4)
            parent = _nearest_drawn_ancestor(prim, drawn)
            if parent is not None:
                parent_world = np.array(cache.GetLocalToWorldTransform(parent), dtype=np.float64).reshape(4, 4)
                pose = world @ np.linalg.inv(parent_world)
            else:
                pose = world @ np.diag([units, units, units, 1.0])
            if path not in self._geometry_logged:
                log_prim_geometry(self.stream, path, prim, time)
                self._geometry_logged.add(path)
            last = self._last_pose.get(path)
            if last is not None and np.array_equal(last, pose):
                continue
            self._last_pose[path] = pose
            translation, mat3 = _matrix_to_transform(pose)
            self.stream.log(path, rr.Transform3D(translation=translation, mat3x3=mat3))


def stage_axis_and_units(stage: Usd.Stage) -> tuple[str, float]:
    """(up axis, metres per unit) as authored on the stage; unauthored: Z up, metres (Isaac Sim's convention).

    USD's own fallbacks (Y up, centimetres) would shrink the many robot stages that author neither.
    """
    _, _, UsdGeom, _ = _pxr()
    up = str(UsdGeom.GetStageUpAxis(stage)) if stage.HasAuthoredMetadata("upAxis") else "Z"
    units = float(UsdGeom.GetStageMetersPerUnit(stage)) if stage.HasAuthoredMetadata("metersPerUnit") else 1.0
    return up, units


def _nearest_drawn_ancestor(prim: Usd.Prim, drawn: set[str]) -> Usd.Prim | None:
    parent = prim.GetParent()
    while parent and not parent.IsPseudoRoot():
        if str(parent.GetPath()) in drawn:
            return parent
        parent = parent.GetParent()
    return None
