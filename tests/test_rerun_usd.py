"""UsdRerunLogger on real usd-core stages, read back from the .rrd with Rerun's own reader."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rerun as rr
from pxr import Gf, Sdf, Usd, UsdGeom, UsdShade, Vt

from episode_recorder.scenes.usd import UsdRerunLogger, triangulate
from rrd_read import assert_usd_world_bounds, component, local_bounds, read_rrd


def record(stage: Usd.Stage, tmp_path: Path, time_codes=(None,), **kwargs) -> dict:
    path = tmp_path / "out.rrd"
    logger = UsdRerunLogger(stage, save_path=path, application_id="test", **kwargs)
    for i, time_code in enumerate(time_codes):
        logger.stream.set_time("frame", sequence=i)
        logger.log_stage(time_code=time_code)
    logger.stream.disconnect()
    return read_rrd(path)


def translations(rows: list[dict]) -> list[list[float]]:
    return [t[0] for t in component(rows, "Transform3D:translation")]


def preview_material(stage: Usd.Stage, path: str, color=None, texture: str | None = None) -> UsdShade.Material:
    material = UsdShade.Material.Define(stage, path)
    shader = UsdShade.Shader.Define(stage, f"{path}/surface")
    shader.CreateIdAttr("UsdPreviewSurface")
    diffuse = shader.CreateInput("diffuseColor", Sdf.ValueTypeNames.Color3f)
    if texture is None:
        diffuse.Set(Gf.Vec3f(*color))
    else:
        tex = UsdShade.Shader.Define(stage, f"{path}/tex")
        tex.CreateIdAttr("UsdUVTexture")
        tex.CreateInput("file", Sdf.ValueTypeNames.Asset).Set(texture)
        diffuse.ConnectToSource(tex.ConnectableAPI(), "rgb")
    material.CreateSurfaceOutput().ConnectToSource(shader.ConnectableAPI(), "surface")
    return material


def quad_mesh(stage: Usd.Stage, path: str) -> UsdGeom.Mesh:
    """A quad and a pentagon sharing an edge; st indexed and faceVarying."""
    mesh = UsdGeom.Mesh.Define(stage, path)
    mesh.CreatePointsAttr([(0, 0, 0), (1, 0, 0), (1, 1, 0), (0, 1, 0), (2, 0, 0), (2.5, 0.5, 0), (2, 1, 0)])
    mesh.CreateFaceVertexCountsAttr([4, 5])
    mesh.CreateFaceVertexIndicesAttr([0, 1, 2, 3, 1, 4, 5, 6, 2])
    st = UsdGeom.PrimvarsAPI(mesh).CreatePrimvar("st", Sdf.ValueTypeNames.TexCoord2fArray, UsdGeom.Tokens.faceVarying)
    st.Set([(0, 0), (1, 0), (1, 1), (0, 1)])
    st.SetIndices(Vt.IntArray([0, 1, 2, 3, 0, 1, 2, 3, 3]))
    mesh.CreateNormalsAttr([(0, 0, 1)] * 9)
    mesh.SetNormalsInterpolation(UsdGeom.Tokens.faceVarying)
    return mesh


def test_triangulate_fans_ngons():
    corners, faces = triangulate(np.array([3, 5, 4]))
    assert corners.tolist() == [[0, 1, 2], [3, 4, 5], [3, 5, 6], [3, 6, 7], [8, 9, 10], [8, 10, 11]]
    assert faces.tolist() == [0, 1, 1, 1, 2, 2]


def test_every_prim_kind_with_its_size(tmp_path):
    stage = Usd.Stage.CreateNew(str(tmp_path / "kinds.usda"))
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.z)
    cube = UsdGeom.Cube.Define(stage, "/World/cube")
    cube.CreateSizeAttr(0.5)
    cube.AddTranslateOp().Set(Gf.Vec3d(1, 2, 3))
    UsdGeom.Sphere.Define(stage, "/World/sphere").CreateRadiusAttr(0.3)
    capsule = UsdGeom.Capsule.Define(stage, "/World/capsule")
    capsule.CreateRadiusAttr(0.1), capsule.CreateHeightAttr(0.4), capsule.CreateAxisAttr("X")
    cylinder = UsdGeom.Cylinder.Define(stage, "/World/cylinder")
    cylinder.CreateRadiusAttr(0.2), cylinder.CreateHeightAttr(0.6)
    cone = UsdGeom.Cone.Define(stage, "/World/cone")
    cone.CreateRadiusAttr(0.25), cone.CreateHeightAttr(0.5)
    plane = UsdGeom.Plane.Define(stage, "/World/plane")
    plane.CreateWidthAttr(4.0), plane.CreateLengthAttr(6.0)
    points = UsdGeom.Points.Define(stage, "/World/points")
    points.CreatePointsAttr([(0, 0, 0), (1, 1, 1)])
    points.CreateWidthsAttr([0.1, 0.2])
    quad_mesh(stage, "/World/mesh")
    UsdGeom.Xform.Define(stage, "/World/empty")

    rows = record(stage, tmp_path)

    assert component(rows["/World/cube"], "Boxes3D:half_sizes") == [[[0.25, 0.25, 0.25]]]
    assert translations(rows["/World/cube"]) == [[1.0, 2.0, 3.0]]
    assert component(rows["/World/sphere"], "Ellipsoids3D:half_sizes")[0][0] == pytest.approx([0.3] * 3)
    assert component(rows["/World/capsule"], "Capsules3D:lengths")[0] == pytest.approx([0.4])
    assert component(rows["/World/capsule"], "Capsules3D:radii")[0] == pytest.approx([0.1])
    # Rerun's capsule starts at its origin: moved back by half its height along X.
    assert component(rows["/World/capsule"], "Capsules3D:translations")[0][0] == pytest.approx([-0.2, 0, 0])
    assert component(rows["/World/cylinder"], "Cylinders3D:lengths")[0] == pytest.approx([0.6])
    assert component(rows["/World/cylinder"], "Cylinders3D:radii")[0] == pytest.approx([0.2])
    cone_points = np.array(component(rows["/World/cone"], "Mesh3D:vertex_positions")[0])
    assert cone_points[:, 2].min() == pytest.approx(-0.25) and cone_points[:, 2].max() == pytest.approx(0.25)
    assert np.linalg.norm(cone_points[:, :2], axis=1).max() == pytest.approx(0.25)
    plane_points = np.array(component(rows["/World/plane"], "Mesh3D:vertex_positions")[0])
    assert np.ptp(plane_points, axis=0).tolist() == pytest.approx([4.0, 6.0, 0.0])
    assert component(rows["/World/points"], "Points3D:positions")[0] == [[0, 0, 0], [1, 1, 1]]
    assert component(rows["/World/points"], "Points3D:radii")[0] == pytest.approx([0.05, 0.1])
    mesh = rows["/World/mesh"]
    assert len(component(mesh, "Mesh3D:triangle_indices")[0]) == 2 + 3  # quad -> 2, pentagon -> 3
    assert len(component(mesh, "Mesh3D:vertex_normals")[0]) == 9  # one vertex per corner (faceVarying)
    uvs = component(mesh, "Mesh3D:vertex_texcoords")[0]
    assert uvs[4:] == [[0, 1], [1, 1], [1, 0], [0, 0], [0, 0]]  # indexed st flattened, v flipped
    assert "/World/empty" not in rows
    assert component(rows["/"], "ViewCoordinates:xyz") == [rr.ViewCoordinates.RIGHT_HAND_Z_UP.as_arrow_array().to_pylist()]
    # Geometry is static and logged once.
    assert all(r["static"] for r in rows["/World/cube"] if r.get("Boxes3D:half_sizes") is not None)


def test_display_color_constant_and_per_vertex(tmp_path):
    stage = Usd.Stage.CreateInMemory()
    constant = quad_mesh(stage, "/constant")
    constant.CreateDisplayColorAttr([(1.0, 0.0, 0.0)])
    per_vertex = UsdGeom.Mesh.Define(stage, "/per_vertex")
    per_vertex.CreatePointsAttr([(0, 0, 0), (1, 0, 0), (0, 1, 0)])
    per_vertex.CreateFaceVertexCountsAttr([3])
    per_vertex.CreateFaceVertexIndicesAttr([0, 1, 2])
    color = UsdGeom.PrimvarsAPI(per_vertex).CreatePrimvar(
        "displayColor", Sdf.ValueTypeNames.Color3fArray, UsdGeom.Tokens.vertex
    )
    color.Set([(1, 0, 0), (0, 1, 0), (0, 0, 1)])

    rows = record(stage, tmp_path)

    assert component(rows["/constant"], "Mesh3D:albedo_factor")[0] == [0xFF0000FF]
    assert component(rows["/per_vertex"], "Mesh3D:vertex_colors")[0] == [0xFF0000FF, 0x00FF00FF, 0x0000FFFF]
    assert component(rows["/per_vertex"], "Mesh3D:triangle_indices")[0] == [[0, 1, 2]]


def test_materials_constant_texture_subsets_and_unreadable_texture(tmp_path):
    from PIL import Image

    Image.fromarray(np.full((4, 8, 3), (10, 20, 30), dtype=np.uint8)).save(tmp_path / "wood.png")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    stage = Usd.Stage.CreateNew(str(tmp_path / "materials.usda"))
    red = preview_material(stage, "/Looks/red", color=(1, 0, 0))
    blue = preview_material(stage, "/Looks/blue", color=(0, 0, 1))
    wood = preview_material(stage, "/Looks/wood", texture="./wood.png")
    broken = preview_material(stage, "/Looks/broken", texture="broken.png")
    cube = UsdGeom.Cube.Define(stage, "/World/red_cube")
    UsdShade.MaterialBindingAPI.Apply(cube.GetPrim()).Bind(red)
    textured = quad_mesh(stage, "/World/textured")
    UsdShade.MaterialBindingAPI.Apply(textured.GetPrim()).Bind(wood)
    bad = quad_mesh(stage, "/World/bad_texture")
    UsdShade.MaterialBindingAPI.Apply(bad.GetPrim()).Bind(broken)
    split = quad_mesh(stage, "/World/split")
    for name, faces, material in (("left", [0], red), ("right", [1], blue)):
        subset = UsdGeom.Subset.CreateGeomSubset(split, name, UsdGeom.Tokens.face, Vt.IntArray(faces), "materialBind")
        UsdShade.MaterialBindingAPI.Apply(subset.GetPrim()).Bind(material)
    stage.Save()

    with pytest.warns(UserWarning, match="broken.png"):
        rows = record(stage, tmp_path)

    assert component(rows["/World/red_cube"], "Boxes3D:colors")[0] == [0xFF0000FF]
    texture = component(rows["/World/textured"], "Mesh3D:albedo_texture_buffer")
    assert len(texture) == 1 and len(texture[0][0]) == 4 * 8 * 3
    assert texture[0][0][:3] == [10, 20, 30]
    assert component(rows["/World/bad_texture"], "Mesh3D:albedo_texture_buffer") == []
    assert len(component(rows["/World/bad_texture"], "Mesh3D:triangle_indices")[0]) == 5
    left, right = rows["/World/split/left"], rows["/World/split/right"]
    assert component(left, "Mesh3D:albedo_factor")[0] == [0xFF0000FF]
    assert len(component(left, "Mesh3D:triangle_indices")[0]) == 2
    assert component(right, "Mesh3D:albedo_factor")[0] == [0x0000FFFF]
    assert len(component(right, "Mesh3D:triangle_indices")[0]) == 3
    assert component(rows["/World/split"], "Mesh3D:triangle_indices") == []  # every face is in a subset


def test_material_inputs_and_node_graphs_are_followed(tmp_path):
    """Shader inputs read from the material's interface, and textures wrapped in a node graph (USDZ, Omniverse)."""
    from PIL import Image

    Image.fromarray(np.full((2, 2, 3), (40, 50, 60), dtype=np.uint8)).save(tmp_path / "grain.png")
    stage = Usd.Stage.CreateNew(str(tmp_path / "graphs.usda"))
    tinted = UsdShade.Material.Define(stage, "/Looks/tinted")
    shader = UsdShade.Shader.Define(stage, "/Looks/tinted/surface")
    shader.CreateIdAttr("UsdPreviewSurface")
    tint = tinted.CreateInput("tint", Sdf.ValueTypeNames.Color3f)
    tint.Set(Gf.Vec3f(0, 0, 1))
    shader.CreateInput("diffuseColor", Sdf.ValueTypeNames.Color3f).ConnectToSource(tint)
    tinted.CreateSurfaceOutput().ConnectToSource(shader.ConnectableAPI(), "surface")
    grained = UsdShade.Material.Define(stage, "/Looks/grained")
    shader = UsdShade.Shader.Define(stage, "/Looks/grained/surface")
    shader.CreateIdAttr("UsdPreviewSurface")
    file_name = grained.CreateInput("file", Sdf.ValueTypeNames.Asset)
    file_name.Set("./grain.png")
    graph = UsdShade.NodeGraph.Define(stage, "/Looks/grained/graph")
    texture = UsdShade.Shader.Define(stage, "/Looks/grained/graph/texture")
    texture.CreateIdAttr("UsdUVTexture")
    texture.CreateInput("file", Sdf.ValueTypeNames.Asset).ConnectToSource(file_name)
    rgb = graph.CreateOutput("rgb", Sdf.ValueTypeNames.Float3)
    rgb.ConnectToSource(texture.ConnectableAPI(), "rgb")
    shader.CreateInput("diffuseColor", Sdf.ValueTypeNames.Color3f).ConnectToSource(rgb)
    grained.CreateSurfaceOutput().ConnectToSource(shader.ConnectableAPI(), "surface")
    cube = UsdGeom.Cube.Define(stage, "/World/tinted")
    UsdShade.MaterialBindingAPI.Apply(cube.GetPrim()).Bind(tinted)
    mesh = quad_mesh(stage, "/World/grained")
    UsdShade.MaterialBindingAPI.Apply(mesh.GetPrim()).Bind(grained)
    stage.Save()

    rows = record(stage, tmp_path)

    assert component(rows["/World/tinted"], "Boxes3D:colors")[0] == [0x0000FFFF]
    (pixels,) = component(rows["/World/grained"], "Mesh3D:albedo_texture_buffer")[0]
    assert pixels == [40, 50, 60] * 4


def test_path_filter_guides_and_invisible_prims(tmp_path):
    stage = Usd.Stage.CreateInMemory()
    for path in ("/World/robot/base", "/World/robot/arm", "/World/BlackGrid/tile", "/Other/cube"):
        UsdGeom.Cube.Define(stage, path)
    guide = UsdGeom.Xform.Define(stage, "/World/robot/collisions")
    guide.CreatePurposeAttr(UsdGeom.Tokens.guide)
    UsdGeom.Cube.Define(stage, "/World/robot/collisions/box")
    hidden = UsdGeom.Xform.Define(stage, "/World/robot/hidden")
    hidden.MakeInvisible()
    UsdGeom.Sphere.Define(stage, "/World/robot/hidden/ball")

    rows = record(stage, tmp_path, path_filter=["/World/*", "!*BlackGrid"])

    drawn = {p for p in rows if p.startswith("/World") or p.startswith("/Other")}
    assert drawn == {"/World/robot/base", "/World/robot/arm"}


def test_instance_proxies_are_drawn(tmp_path):
    stage = Usd.Stage.CreateInMemory()
    UsdGeom.Sphere.Define(stage, "/Prototypes/wheel/tire").CreateRadiusAttr(0.4)
    for i in range(2):
        wheel = UsdGeom.Xform.Define(stage, f"/World/wheel_{i}")
        wheel.GetPrim().GetReferences().AddInternalReference("/Prototypes/wheel")
        wheel.GetPrim().SetInstanceable(True)
        wheel.AddTranslateOp().Set(Gf.Vec3d(i * 2.0, 0, 0))

    rows = record(stage, tmp_path, path_filter="/World/*")

    assert translations(rows["/World/wheel_0/tire"]) == [[0.0, 0.0, 0.0]]
    assert translations(rows["/World/wheel_1/tire"]) == [[2.0, 0.0, 0.0]]
    assert component(rows["/World/wheel_1/tire"], "Ellipsoids3D:half_sizes")[0][0] == pytest.approx([0.4] * 3)


def test_time_samples_animate_and_only_changes_are_logged(tmp_path):
    stage = Usd.Stage.CreateInMemory()
    stage.SetStartTimeCode(0), stage.SetEndTimeCode(2)
    body = UsdGeom.Xform.Define(stage, "/World/body")
    op = body.AddTranslateOp()
    op.Set(Gf.Vec3d(0, 0, 0), 0.0)
    op.Set(Gf.Vec3d(2, 0, 0), 2.0)
    UsdGeom.Cube.Define(stage, "/World/body/box")
    UsdGeom.Sphere.Define(stage, "/World/still")

    rows = record(stage, tmp_path, time_codes=(None, 1.0, 2.0, 2.0))

    box = [r for r in rows["/World/body/box"] if r.get("Transform3D:translation")]
    assert [(r["frame"], r["Transform3D:translation"][0]) for r in box] == [
        (0, [0.0, 0.0, 0.0]), (1, [1.0, 0.0, 0.0]), (2, [2.0, 0.0, 0.0])
    ]  # the repeated time code 2 is not logged again
    assert len(translations(rows["/World/still"])) == 1
    assert len(component(rows["/World/body/box"], "Boxes3D:half_sizes")) == 1


def test_nested_geometry_gets_relative_pose(tmp_path):
    stage = Usd.Stage.CreateInMemory()
    UsdGeom.Cube.Define(stage, "/World/outer").AddTranslateOp().Set(Gf.Vec3d(1, 0, 0))
    UsdGeom.Sphere.Define(stage, "/World/outer/inner").AddTranslateOp().Set(Gf.Vec3d(0, 3, 0))

    rows = record(stage, tmp_path)

    assert translations(rows["/World/outer"]) == [[1.0, 0.0, 0.0]]
    assert translations(rows["/World/outer/inner"]) == [[0.0, 3.0, 0.0]]  # not the world pose again


def test_y_up_and_centimetre_units(tmp_path):
    stage = Usd.Stage.CreateInMemory()
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.y)
    UsdGeom.SetStageMetersPerUnit(stage, UsdGeom.LinearUnits.centimeters)
    cube = UsdGeom.Cube.Define(stage, "/World/box")
    cube.CreateSizeAttr(10.0)
    cube.AddTranslateOp().Set(Gf.Vec3d(0, 100, 0))

    rows = record(stage, tmp_path)

    assert translations(rows["/World/box"]) == [pytest.approx([0.0, 1.0, 0.0])]
    mat = np.array(component(rows["/World/box"], "Transform3D:mat3x3")[0][0])
    assert np.diag(mat.reshape(3, 3)) == pytest.approx([0.01] * 3)  # 10 cm cube -> 0.1 m
    y_up = rr.ViewCoordinates.RIGHT_HAND_Y_UP.as_arrow_array().to_pylist()
    assert component(rows["/"], "ViewCoordinates:xyz") == [y_up]


def test_no_stream_is_a_clear_error():
    stage = Usd.Stage.CreateInMemory()
    with pytest.raises(ValueError, match="save_path"):
        UsdRerunLogger(stage)


def test_omnipbr_diffuse_color(tmp_path):
    stage = Usd.Stage.CreateInMemory()
    material = UsdShade.Material.Define(stage, "/Looks/omni")
    shader = UsdShade.Shader.Define(stage, "/Looks/omni/Shader")
    shader.SetSourceAsset("OmniPBR.mdl", "mdl")
    shader.CreateInput("diffuse_color_constant", Sdf.ValueTypeNames.Color3f).Set(Gf.Vec3f(0, 1, 0))
    material.CreateSurfaceOutput("mdl").ConnectToSource(shader.ConnectableAPI(), "out")
    cube = UsdGeom.Cube.Define(stage, "/World/green")
    UsdShade.MaterialBindingAPI.Apply(cube.GetPrim()).Bind(material)

    rows = record(stage, tmp_path)

    assert component(rows["/World/green"], "Boxes3D:colors")[0] == [0x00FF00FF]


AXES = ("X", "Y", "Z")


def every_primitive_on_every_axis(stage: Usd.Stage) -> list[str]:
    """Each kind (each axis for the axis-ed ones), every size authored unequal, under moved/turned/scaled parents."""
    paths = []

    def place(kind: Any, name: str, index: int) -> Any:
        parent = UsdGeom.Xform.Define(stage, f"/World/{name}")
        parent.AddTranslateOp().Set(Gf.Vec3d(index, -2.0 * index, 0.5))
        parent.AddRotateXYZOp().Set(Gf.Vec3f(10.0 * index, 45, 30))
        prim = kind.Define(stage, f"/World/{name}/shape")
        prim.AddRotateZOp().Set(90.0)
        prim.AddScaleOp().Set(Gf.Vec3f(1.0, 2.0, 0.5))
        paths.append(str(prim.GetPath()))
        return prim

    index = 0
    for axis in AXES:
        capsule = place(UsdGeom.Capsule, f"capsule_{axis}", index := index + 1)
        capsule.CreateRadiusAttr(0.1), capsule.CreateHeightAttr(0.4), capsule.CreateAxisAttr(axis)
        cylinder = place(UsdGeom.Cylinder, f"cylinder_{axis}", index := index + 1)
        cylinder.CreateRadiusAttr(0.2), cylinder.CreateHeightAttr(0.7), cylinder.CreateAxisAttr(axis)
        cone = place(UsdGeom.Cone, f"cone_{axis}", index := index + 1)
        cone.CreateRadiusAttr(0.25), cone.CreateHeightAttr(0.9), cone.CreateAxisAttr(axis)
        plane = place(UsdGeom.Plane, f"plane_{axis}", index := index + 1)
        plane.CreateWidthAttr(2.0), plane.CreateLengthAttr(3.0), plane.CreateAxisAttr(axis)
    place(UsdGeom.Cube, "cube", index := index + 1).CreateSizeAttr(0.6)
    place(UsdGeom.Sphere, "sphere", index := index + 1).CreateRadiusAttr(0.35)
    points = place(UsdGeom.Points, "points", index := index + 1)
    points.CreatePointsAttr([(0, 0, 0), (1, 2, 3), (-1, 0.5, 0)])
    points.CreateWidthsAttr([0.1, 0.4, 0.2])
    mesh = quad_mesh(stage, "/World/mesh")
    mesh.AddTranslateOp().Set(Gf.Vec3d(0, 0, 1))
    mesh.AddRotateXOp().Set(35.0)
    paths.append("/World/mesh")
    # Drawn inside a drawn prim: its pose is relative to the cube, which must not be applied twice.
    inner = UsdGeom.Cylinder.Define(stage, "/World/cube/shape/inner")
    inner.CreateAxisAttr("X"), inner.AddTranslateOp().Set(Gf.Vec3d(0.5, 0, 0))
    paths.append("/World/cube/shape/inner")
    return paths


@pytest.mark.parametrize("meters_per_unit", [1.0, 0.01])
def test_every_primitive_on_every_axis_has_usds_own_world_bounds(tmp_path, meters_per_unit):
    """The bounds of what is drawn, under the logged transforms, equal ``UsdGeom.Imageable.ComputeWorldBound``."""
    stage = Usd.Stage.CreateInMemory()
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.z)
    UsdGeom.SetStageMetersPerUnit(stage, meters_per_unit)
    paths = every_primitive_on_every_axis(stage)

    rows = record(stage, tmp_path)

    for path in paths:
        assert_usd_world_bounds(rows, path, stage.GetPrimAtPath(path), scale=meters_per_unit)


def outward_facing(vertices: Any, triangles: Any) -> np.ndarray:
    """Per triangle: whether its counter-clockwise (Rerun's front-face) normal points away from the centre."""
    vertices, triangles = np.asarray(vertices, dtype=np.float64), np.asarray(triangles)
    a, b, c = (vertices[triangles[:, k]] for k in range(3))
    normals = np.cross(b - a, c - a)
    return np.einsum("ij,ij->i", normals, (a + b + c) / 3 - vertices.mean(axis=0)) > 0


def test_plane_and_cone_follow_the_axis(tmp_path):
    """Plane: width along x (axis Z, Y) or z (axis X), length along y (Z, X) or z (Y). Cone: apex at +axis."""
    stage = Usd.Stage.CreateInMemory()
    for axis in AXES:
        plane = UsdGeom.Plane.Define(stage, f"/World/plane_{axis}")
        plane.CreateWidthAttr(2.0), plane.CreateLengthAttr(3.0), plane.CreateAxisAttr(axis)
        cone = UsdGeom.Cone.Define(stage, f"/World/cone_{axis}")
        cone.CreateRadiusAttr(0.5), cone.CreateHeightAttr(4.0), cone.CreateAxisAttr(axis)

    rows = record(stage, tmp_path)

    extents = {axis: np.ptp(local_bounds(rows[f"/World/plane_{axis}"]), axis=0) for axis in AXES}
    assert extents["X"].tolist() == [0.0, 3.0, 2.0]
    assert extents["Y"].tolist() == [2.0, 0.0, 3.0]
    assert extents["Z"].tolist() == [2.0, 3.0, 0.0]
    for index, axis in enumerate(AXES):
        cone = rows[f"/World/cone_{axis}"]
        vertices = np.array(component(cone, "Mesh3D:vertex_positions")[0])
        apex = np.zeros(3)
        apex[index] = 2.0
        assert (np.abs(vertices - apex).max(axis=1) < 1e-6).sum() == 1  # one apex, at +height/2 on the axis
        assert (np.abs(vertices[:, index] + 2.0) < 1e-6).sum() == len(vertices) - 1  # the base at -height/2
        assert outward_facing(vertices, component(cone, "Mesh3D:triangle_indices")[0]).all()


PYRAMID_POINTS = [(0, 0, 0), (1, 0, 0), (1, 1, 0), (0, 1, 0), (0.5, 0.5, 1)]
PYRAMID_FACES = [[0, 3, 2, 1], [0, 1, 4], [1, 2, 4], [2, 3, 4], [3, 0, 4]]  # counter-clockwise seen from outside


@pytest.mark.parametrize("normals", [None, UsdGeom.Tokens.faceVarying])
@pytest.mark.parametrize("orientation", [UsdGeom.Tokens.rightHanded, UsdGeom.Tokens.leftHanded])
def test_left_handed_meshes_keep_their_front_faces_outside(tmp_path, orientation, normals):
    """A leftHanded mesh lists each face clockwise seen from the front: its triangles are reversed for Rerun."""
    faces = PYRAMID_FACES if orientation == UsdGeom.Tokens.rightHanded else [f[::-1] for f in PYRAMID_FACES]
    stage = Usd.Stage.CreateInMemory()
    mesh = UsdGeom.Mesh.Define(stage, "/World/pyramid")
    mesh.CreatePointsAttr(PYRAMID_POINTS)
    mesh.CreateFaceVertexCountsAttr([len(f) for f in faces])
    mesh.CreateFaceVertexIndicesAttr([i for f in faces for i in f])
    mesh.CreateOrientationAttr(orientation)
    if normals is not None:  # one outward normal per corner: one logged vertex per corner
        points = np.array(PYRAMID_POINTS, dtype=np.float64)
        corner_normals = []
        for face in faces:
            normal = points[face].mean(axis=0) - points.mean(axis=0)
            corner_normals += [tuple(normal / np.linalg.norm(normal))] * len(face)
        mesh.CreateNormalsAttr(corner_normals)
        mesh.SetNormalsInterpolation(normals)

    rows = record(stage, tmp_path)

    pyramid = rows["/World/pyramid"]
    vertices = np.array(component(pyramid, "Mesh3D:vertex_positions")[0])
    triangles = np.array(component(pyramid, "Mesh3D:triangle_indices")[0])
    assert len(triangles) == 6 and len(vertices) == (5 if normals is None else 16)
    assert outward_facing(vertices, triangles).all()
    if normals is not None:  # the authored normals agree with the winding Rerun sees
        vertex_normals = np.array(component(pyramid, "Mesh3D:vertex_normals")[0])
        a, b, c = (vertices[triangles[:, k]] for k in range(3))
        winding = np.cross(b - a, c - a)
        assert (np.einsum("ij,ij->i", winding, vertex_normals[triangles[:, 0]]) > 0).all()


def omnipbr_material(stage: Usd.Stage, path: str, color=None, texture: str | None = None) -> UsdShade.Material:
    """An OmniPBR material as Isaac Sim writes it: an MDL shader, ``outputs:mdl:surface``."""
    material = UsdShade.Material.Define(stage, path)
    shader = UsdShade.Shader.Define(stage, f"{path}/Shader")
    shader.SetSourceAsset("OmniPBR.mdl", "mdl")
    shader.SetSourceAssetSubIdentifier("OmniPBR", "mdl")
    if color is not None:
        shader.CreateInput("diffuse_color_constant", Sdf.ValueTypeNames.Color3f).Set(Gf.Vec3f(*color))
    if texture is not None:
        shader.CreateInput("diffuse_texture", Sdf.ValueTypeNames.Asset).Set(texture)
    material.CreateSurfaceOutput("mdl").ConnectToSource(shader.ConnectableAPI(), "out")
    return material


def test_omnipbr_diffuse_texture_is_found_relative_to_its_layer_and_logged(tmp_path):
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 256, (4, 6, 3), dtype=np.uint8)
    (tmp_path / "robot" / "textures").mkdir(parents=True)
    Image.fromarray(pixels).save(tmp_path / "robot" / "textures" / "paint.png")
    # The asset lives in robot/ and names its texture relative to itself; the stage opening it is elsewhere.
    asset = Usd.Stage.CreateNew(str(tmp_path / "robot" / "robot.usda"))
    UsdGeom.Xform.Define(asset, "/Robot")
    painted = omnipbr_material(asset, "/Robot/Looks/paint", color=(0, 1, 0), texture="./textures/paint.png")
    body = quad_mesh(asset, "/Robot/body")
    UsdShade.MaterialBindingAPI.Apply(body.GetPrim()).Bind(painted)
    asset.SetDefaultPrim(asset.GetPrimAtPath("/Robot"))
    asset.Save()
    (tmp_path / "scene").mkdir()
    stage = Usd.Stage.CreateNew(str(tmp_path / "scene" / "scene.usda"))
    UsdGeom.Xform.Define(stage, "/World/robot").GetPrim().GetReferences().AddReference("../robot/robot.usda")
    stage.Save()

    rows = record(stage, tmp_path)

    body = rows["/World/robot/body"]
    texture = component(body, "Mesh3D:albedo_texture_buffer")
    assert len(texture) == 1 and texture[0][0] == pixels.reshape(-1).tolist()  # the image, pixel for pixel
    (texture_format,) = component(body, "Mesh3D:albedo_texture_format")[0]
    assert (texture_format["width"], texture_format["height"]) == (6, 4)
    assert component(body, "Mesh3D:albedo_factor") == []  # the texture wins over diffuse_color_constant
    assert len(component(body, "Mesh3D:vertex_texcoords")[0]) == 9
