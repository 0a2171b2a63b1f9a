"""Dense image warp driven by a moving landmark mesh.

The photo is covered by a Delaunay mesh (its face landmarks, two rings around the head, and anchors
*outside* the frame so the border is padded, never pinned). Each frame moves the mesh vertices; the
displacement inside every triangle is affine (piecewise-affine warp, as in Averbuch-Elor et al.,
"Bringing Portraits to Life", SIGGRAPH Asia 2017).

Heavy work happens once per photo: the triangulation and, for every node of a coarse grid, its
triangle and barycentric weights. Per frame the forward displacement at the grid is one gather; it is
inverted into the backward map that ``cv2.remap`` needs by fixed-point iteration (Chen et al., "A
simple fixed-point approach to invert a deformation field", Medical Physics 35(1), 2008), upsampled,
and applied once at full resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.sparse import csr_matrix
from scipy.spatial import Delaunay

from stillmotion.engine import face_model as fm

#: Fixed-point iterations of the inversion: the error shrinks geometrically with the field's
#: gradient; three reach sub-pixel accuracy wherever the warp does not fold.
_INVERSION_STEPS = 3
#: Below this backward displacement (pixels) a grid node counts as still: its pixels are the photo's.
_STILL = 0.02


@dataclass(frozen=True)
class MovingRegion:
    """A backward map ``(h, w, 2)`` for the image window ``[rows, cols]``, and how far each of its
    pixels moves (``(h, w)``, pixels, interpolated from the coarse grid)."""

    map: np.ndarray
    rows: slice
    cols: slice
    motion: np.ndarray

    def fixed_point(self) -> tuple[np.ndarray, np.ndarray]:
        """The map in OpenCV's fixed-point form: converted once, it makes every remap through it
        cheaper (several images are resampled through the same map)."""
        return cv2.convertMaps(self.map, None, cv2.CV_16SC2)


class MeshWarp:
    """Backward remap tables for a fixed triangulation of ``source`` vertices over a ``(w, h)`` image."""

    def __init__(self, source: np.ndarray, size: tuple[int, int], step: int):
        width, height = size
        self.size = size
        self.step = step
        self.source = source.astype(np.float64)
        self.mesh = Delaunay(self.source)
        # One node beyond each edge, so every pixel lies between nodes and the upsampling below
        # interpolates, never clamps, at the border.
        gw, gh = -(-width // step) + 2, -(-height // step) + 2
        self._grid_shape = (gh, gw)
        # Nodes sit at block centres, which makes cv2.resize by ``step`` land exactly on pixels.
        xs = (np.arange(gw) - 0.5) * step - 0.5
        ys = (np.arange(gh) - 0.5) * step - 0.5
        nodes = np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2)
        simplex = self.mesh.find_simplex(nodes)
        if (simplex < 0).any():
            raise ValueError("the mesh does not cover the image: anchors must lie outside the frame")
        transform = self.mesh.transform[simplex]
        bary = np.einsum("nij,nj->ni", transform[:, :2], nodes - transform[:, 2])
        weights = np.concatenate([bary, 1 - bary.sum(1, keepdims=True)], 1)
        # Each node's displacement is the barycentric blend of its triangle's three vertices: one
        # sparse matrix (three entries a row) turns vertex motion into grid motion per frame.
        rows = np.repeat(np.arange(len(nodes)), 3)
        self._blend = csr_matrix(
            (weights.ravel().astype(np.float32), (rows, self.mesh.simplices[simplex].ravel())),
            shape=(len(nodes), len(self.source)),
        )
        self._nodes = nodes.reshape(gh, gw, 2).astype(np.float32)
        # Converts pixel positions to the coarse grid's own (node index) coordinates.
        self._unit = np.float32(1.0 / step)
        self._origin = np.float32(xs[0])

    @property
    def triangles(self) -> np.ndarray:
        return self.mesh.simplices

    def forward_displacement(self, target: np.ndarray) -> np.ndarray:
        """Displacement ``(gh, gw, 2)`` of each coarse grid node when vertices move to ``target``."""
        moved = (target - self.source).astype(np.float32)
        return np.asarray(self._blend @ moved).reshape(*self._grid_shape, 2)

    def backward_field(self, target: np.ndarray) -> np.ndarray:
        """Backward displacement ``(gh, gw, 2)`` at each grid node: output node + it = photo point."""
        forward = self.forward_displacement(target)
        # Solve u(p) = -D(p + u(p)) for the backward displacement u at each output node p.
        back = -forward
        for _ in range(_INVERSION_STEPS):
            at = (self._nodes + back - self._origin) * self._unit
            back = -cv2.remap(forward, at, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return back

    def _dense(self, back: np.ndarray, rows: slice, cols: slice) -> MovingRegion:
        """The full-resolution map over the grid nodes ``rows`` x ``cols``, and the image rows and
        columns it covers (the sub-grid's outer half-blocks, where upsampling clamps, are dropped)."""
        step = self.step
        sub = self._nodes[rows, cols] + back[rows, cols]
        size = (sub.shape[1] * step, sub.shape[0] * step)
        # Resizing absolute positions is exact: they are linear in the pixel grid between nodes.
        dense = cv2.resize(sub, size, interpolation=cv2.INTER_LINEAR)
        motion = cv2.resize(np.abs(back[rows, cols]).sum(-1), size, interpolation=cv2.INTER_LINEAR)
        width, height = self.size
        # Pixel p of ``dense`` lies at image coordinate p + (first node - 1) * step.
        y0, x0 = (rows.start - 1) * step, (cols.start - 1) * step
        top, left = max(y0 + step // 2, 0), max(x0 + step // 2, 0)
        bottom = min(y0 + dense.shape[0] - step // 2, height)
        right = min(x0 + dense.shape[1] - step // 2, width)
        window = (slice(top - y0, bottom - y0), slice(left - x0, right - x0))
        return MovingRegion(dense[window], slice(top, bottom), slice(left, right), motion[window])

    def backward_map(self, target: np.ndarray) -> np.ndarray:
        """Full-resolution map ``(h, w, 2)``: for each output pixel, where to sample the photo."""
        gh, gw = self._grid_shape
        return self._dense(self.backward_field(target), slice(0, gh), slice(0, gw)).map

    def moving_map(self, target: np.ndarray) -> MovingRegion | None:
        """The backward map over just the region that moves when vertices go to ``target`` (outside
        it the map is the identity), or ``None`` when nothing moves."""
        back = self.backward_field(target)
        moving = np.abs(back).max(-1) > _STILL
        if not moving.any():
            return None
        rows, cols = np.flatnonzero(moving.any(1)), np.flatnonzero(moving.any(0))
        gh, gw = self._grid_shape
        # Still nodes of margin: one to interpolate toward, one where the upsampling clamps.
        rows = slice(max(rows[0] - 2, 0), min(rows[-1] + 3, gh))
        cols = slice(max(cols[0] - 2, 0), min(cols[-1] + 3, gw))
        return self._dense(back, rows, cols)

    def warp(self, photo: np.ndarray, target: np.ndarray) -> np.ndarray:
        """The photo warped so its vertices move to ``target``; pixels outside the moving region are
        the photo's own."""
        frame = photo.copy()
        region = self.moving_map(target)
        if region is not None:
            frame[region.rows, region.cols] = remap(photo, region.fixed_point())
        return frame

    def flipped(self, target: np.ndarray) -> int:
        """How many triangles change orientation (fold over) when vertices move to ``target``."""

        def signed_area(v: np.ndarray) -> np.ndarray:
            a, b, c = v[self.triangles[:, 0]], v[self.triangles[:, 1]], v[self.triangles[:, 2]]
            return (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])

        before, after = signed_area(self.source), signed_area(target)
        return int(((before * after) < 0).sum())


def remap(photo: np.ndarray, backward: np.ndarray | tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Sample the photo through a backward map (float, or ``MovingRegion.fixed_point``); the border
    reflects, so no black wedges appear.

    A float map is passed as one two-channel array: OpenCV's fast path, about 3x quicker than x and y
    maps given apart."""
    first, second = backward if isinstance(backward, tuple) else (backward, None)
    return cv2.remap(photo, first, second, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)


class HeadRig:
    """The mesh vertices of a photo: its face landmarks, a ring around the head, points on the body,
    background points around them, and anchors outside the frame.

    The head ring is fitted to the photo's own head: along rays from the face centre it lies just
    outside the person mask (so all of the hair is inside it and moves rigidly with the head), and
    hugs the jaw below the ears, where the neck joins the body. It follows the head's in-plane motion
    fully, but half below the chin. Body points (a grid over the person outside the head) move
    *rigidly*, by a damped share of the head's travel, so shoulders and torso sway with the head
    instead of stretching toward it (with ``body_sway`` off the body stays still, rigid too).
    Background points and the anchors outside the frame stay still: whatever the mesh stretches
    there, the compositor replaces with the still background plate.
    """

    RAYS = 48
    #: How far the head silhouette is searched for, and where the outer ring lies, in face radii.
    SEARCH, OUTER_GAP = 3.0, 1.6
    HEAD_FOLLOW, NECK_FOLLOW = 1.0, 0.5
    #: Share of the head's travel the body takes (x, y): a sway, not a copy of the head's motion.
    BODY_FOLLOW = np.array([0.3, 0.15])
    #: Spacing of the body grid and its clearance from the head ring, in face radii.
    BODY_SPACING, BODY_CLEARANCE = 0.8, 0.45

    def __init__(
        self,
        photo_landmarks: np.ndarray,
        size: tuple[int, int],
        person: np.ndarray,
        *,
        body_sway: bool = True,
    ):
        width, height = size
        lm2 = photo_landmarks[:, :2]
        oval = lm2[fm.FACE_OVAL]
        centre = oval.mean(0)
        radius = float(np.linalg.norm(oval - centre, axis=1).mean())
        self._oval = oval
        angles = np.linspace(0, 2 * np.pi, self.RAYS, endpoint=False)
        rays = np.stack([np.cos(angles), np.sin(angles)], 1)
        head = centre + rays * self._head_extent(centre, rays, radius, person, oval)[:, None]
        outer = head + rays * (self.OUTER_GAP * radius)
        body = _body_points(person, head, centre, radius * self.BODY_SPACING, radius * self.BODY_CLEARANCE)
        outer = outer[~_on_person(person, outer)]
        margin = 0.35 * max(width, height)
        ticks_x = np.linspace(-margin, width - 1 + margin, 7)
        ticks_y = np.linspace(-margin, height - 1 + margin, 7)
        anchors = np.array(
            [(x, y) for x in ticks_x for y in (ticks_y[0], ticks_y[-1])]
            + [(x, y) for y in ticks_y[1:-1] for x in (ticks_x[0], ticks_x[-1])]
        )
        self._head = head
        self._centre = centre
        below_chin = head[:, 1] > photo_landmarks[fm.CHIN, 1]
        self._head_follow = np.where(below_chin, self.NECK_FOLLOW, self.HEAD_FOLLOW)[:, None]
        self._body = body
        self._body_follow = self.BODY_FOLLOW if body_sway else np.zeros(2)
        self._still = np.concatenate([outer, anchors])
        self.source = np.concatenate([lm2, head, body, self._still])

    def _head_extent(
        self, centre: np.ndarray, rays: np.ndarray, radius: float, person: np.ndarray, oval: np.ndarray
    ) -> np.ndarray:
        """Distance from the face centre to just beyond the head's silhouette, along each ray."""
        height, width = person.shape
        steps = np.linspace(0.0, self.SEARCH * radius, 96)
        points = centre + rays[:, None, :] * steps[None, :, None]  # (rays, steps, 2)
        xs = np.clip(np.round(points[..., 0]).astype(int), 0, width - 1)
        ys = np.clip(np.round(points[..., 1]).astype(int), 0, height - 1)
        inside_frame = (
            (points[..., 0] >= 0)
            & (points[..., 0] < width)
            & (points[..., 1] >= 0)
            & (points[..., 1] < height)
        )
        # Outside the frame the head may go on: count it as head so the ring passes beyond the border.
        is_person = (person[ys, xs] > 0.5) | ~inside_frame
        # The first step outside the person, after the face itself, ends the head along that ray.
        face_reach = np.array([_reach(oval - centre, ray) for ray in rays])
        extent = np.empty(len(rays))
        for k in range(len(rays)):
            beyond_face = steps >= face_reach[k]
            gaps = np.flatnonzero(beyond_face & ~is_person[k])
            extent[k] = steps[gaps[0]] if len(gaps) else steps[-1]
        # Below the ears the silhouette is neck and body: hug the jaw instead.
        downward = rays[:, 1] > 0.35
        extent[downward] = face_reach[downward] * 1.12
        return np.maximum(extent, face_reach * 1.12) + 0.12 * radius

    def vertices(self, target_landmarks: np.ndarray) -> np.ndarray:
        """Target positions of every mesh vertex for the given target face landmarks."""
        tgt2 = target_landmarks[:, :2]
        head_motion = fm.fit_similarity(self._oval, tgt2[fm.FACE_OVAL])
        head = self._head
        moved_head = head + self._head_follow * (head_motion.apply(head) - head)
        travel = head_motion.apply(self._centre[None])[0] - self._centre
        moved_body = self._body + self._body_follow * travel
        return np.concatenate([tgt2, moved_head, moved_body, self._still])


def _on_person(person: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Whether each point lies on the person (points outside the frame do not)."""
    height, width = person.shape
    xs, ys = np.round(points[:, 0]).astype(int), np.round(points[:, 1]).astype(int)
    inside = (xs >= 0) & (xs < width) & (ys >= 0) & (ys < height)
    hit = np.zeros(len(points), bool)
    hit[inside] = person[ys[inside], xs[inside]] > 0.5
    return hit


def _body_points(
    person: np.ndarray, head: np.ndarray, centre: np.ndarray, spacing: float, clearance: float
) -> np.ndarray:
    """A grid of points on the person, at least ``clearance`` outside the head ring."""
    height, width = person.shape
    xs = np.arange(spacing / 2, width, spacing)
    ys = np.arange(spacing / 2, height, spacing)
    grid = np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2)
    grid = grid[_on_person(person, grid)]
    ring = head.astype(np.float32).reshape(-1, 1, 2)
    keep = [cv2.pointPolygonTest(ring, (float(x), float(y)), True) < -clearance for x, y in grid]
    return grid[np.array(keep, bool)] if len(grid) else grid.reshape(0, 2)


def _reach(offsets: np.ndarray, ray: np.ndarray) -> float:
    """How far the face outline (``offsets`` from the centre) extends along the unit ``ray``."""
    along = offsets @ ray
    across = np.abs(offsets @ np.array([-ray[1], ray[0]]))
    near = across < max(float(np.median(np.abs(along))) * 0.35, 1.0)
    return float(along[near].max()) if near.any() else float(np.abs(along).max())
