"""Point-cloud observations from a MuJoCo camera, without OpenGL.

DP3's pipeline is depth render -> back-projection with the camera's intrinsics and pose -> crop to
the workspace -> farthest-point sampling. Offscreen GL is not available everywhere (no EGL device,
no OSMesa on a bare machine), so the depth image is rendered by casting one ray per pixel through
the pixel centre with ``mujoco.mj_multiRay`` - the same geometry a depth buffer sees (geom groups
0-2, the renderer's default; invisible geoms are skipped by MuJoCo's ray caster). Pixels whose ray
hits nothing within ``far`` metres are empty (depth 0), as beyond the far plane of a depth buffer.
"""

from __future__ import annotations

import mujoco
import numpy as np

VISIBLE_GROUPS = np.array([1, 1, 1, 0, 0, 0], dtype=np.uint8)  # what mujoco's renderer shows by default


class RayCastDepthCamera:
    """A pinhole camera of the model (its ``fovy``, square pixels) rendering metric z-depth."""

    def __init__(self, model: mujoco.MjModel, camera: str, width: int = 128, height: int = 128,
                 far: float = 1.5) -> None:
        self.model = model
        self.cam_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, camera)
        if self.cam_id < 0:
            names = [model.camera(i).name for i in range(model.ncam)]
            raise ValueError(f"camera {camera!r} not in the model; cameras: {', '.join(names)}")
        self.width, self.height, self.far = width, height, far
        self._geomid = np.zeros(width * height, np.int32)
        self._dist = np.zeros(width * height, np.float64)

    @property
    def intrinsics(self) -> np.ndarray:
        """3x3 K: focal length from the camera's vertical field of view, principal point at the centre."""
        f = 0.5 * self.height / np.tan(np.deg2rad(self.model.cam_fovy[self.cam_id]) / 2)
        return np.array([[f, 0.0, self.width / 2], [0.0, f, self.height / 2], [0.0, 0.0, 1.0]])

    def pose(self, data: mujoco.MjData) -> tuple[np.ndarray, np.ndarray]:
        """(position, 3x3 rotation camera->world); MuJoCo cameras look along their -z axis, y up."""
        return data.cam_xpos[self.cam_id].copy(), data.cam_xmat[self.cam_id].reshape(3, 3).copy()

    def _pixel_rays(self) -> np.ndarray:
        """Unit-depth directions (camera frame, OpenCV convention: x right, y down, z forward)."""
        k = self.intrinsics
        u, v = np.meshgrid(np.arange(self.width) + 0.5, np.arange(self.height) + 0.5)
        return np.stack([(u - k[0, 2]) / k[0, 0], (v - k[1, 2]) / k[1, 1], np.ones_like(u)], axis=-1)

    def depth(self, data: mujoco.MjData) -> np.ndarray:
        """(height, width) z-depth in metres, 0 where nothing is hit within ``far``."""
        pos, rot = self.pose(data)
        rays_cv = self._pixel_rays().reshape(-1, 3)
        rays_world = (rays_cv * np.array([1.0, -1.0, -1.0])) @ rot.T  # OpenCV -> MuJoCo camera -> world
        norms = np.linalg.norm(rays_world, axis=1)
        mujoco.mj_multiRay(self.model, data, pos, (rays_world / norms[:, None]).reshape(-1), VISIBLE_GROUPS, 1, -1,
                           self._geomid, self._dist, len(norms), self.far)
        hit = self._dist >= 0
        z = np.where(hit, self._dist / norms, 0.0)  # distance along the ray -> depth along the optical axis
        return z.reshape(self.height, self.width)

    def back_project(self, depth: np.ndarray, data: mujoco.MjData) -> np.ndarray:
        """World xyz (N, 3) of every non-empty pixel of a depth image."""
        pos, rot = self.pose(data)
        rays_cv = self._pixel_rays()
        valid = depth > 0
        points_cv = rays_cv[valid] * depth[valid][:, None]
        return (points_cv * np.array([1.0, -1.0, -1.0])) @ rot.T + pos


def crop(points: np.ndarray, low, high) -> np.ndarray:
    """The points inside the axis-aligned box [low, high] (world frame)."""
    inside = np.all((points >= np.asarray(low)) & (points <= np.asarray(high)), axis=1)
    return points[inside]


def farthest_point_sampling(points: np.ndarray, n: int) -> np.ndarray:
    """``n`` points spread over the cloud: start from the point nearest the centroid (deterministic),
    then repeatedly add the point farthest from those chosen. Fewer than ``n`` points: repeated."""
    if len(points) == 0:
        return np.zeros((n, 3), dtype=np.float32)
    if len(points) <= n:
        return points[np.arange(n) % len(points)].astype(np.float32)
    x, y, z = (np.ascontiguousarray(points[:, i], dtype=np.float32) for i in range(3))
    chosen = np.empty(n, dtype=np.int64)
    chosen[0] = int(np.argmin((x - x.mean()) ** 2 + (y - y.mean()) ** 2 + (z - z.mean()) ** 2))
    nearest = np.full(len(x), np.inf, dtype=np.float32)
    buf, tmp = np.empty_like(x), np.empty_like(x)
    for i in range(n):
        if i:
            chosen[i] = int(np.argmax(nearest))
        c = chosen[i]
        buf.fill(0.0)
        for axis in (x, y, z):  # squared distance to the new point, without temporaries
            np.subtract(axis, axis[c], out=tmp)
            np.multiply(tmp, tmp, out=tmp)
            buf += tmp
        np.minimum(nearest, buf, out=nearest)
    return points[chosen].astype(np.float32)
