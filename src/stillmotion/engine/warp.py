"""Dense image warp driven by a moving landmark mesh.

The photo is covered by a triangle mesh whose vertices move each frame; inside every triangle the
displacement is affine (piecewise-affine warping, as in Averbuch-Elor et al., "Bringing Portraits to
Life", SIGGRAPH Asia 2017). The face is tiled by the topology of MediaPipe's canonical face mesh
(Kartynnik et al., "Real-time Facial Surface Geometry from Monocular Video on Mobile GPUs", 2019),
its eye and mouth openings closed by the rig's own triangles; around it, a Delaunay triangulation
of the head ring, body and background points, and anchors *outside* the frame (so the border is
padded, never pinned) tiles the rest of the image.

Heavy work happens once per photo: the triangles and, for every node of a coarse grid, its triangle
and barycentric weights (the triangles are rasterised at grid resolution). Per frame the forward
displacement at the grid is one sparse product; it is inverted into the backward map that
``cv2.remap`` needs by fixed-point iteration (Chen et al., "A simple fixed-point approach to invert a
deformation field", Medical Physics 35(1), 2008), upsampled, and applied once at full resolution.
Features finer than the grid (the eyes: lids a few pixels apart, their lashes and creases)
get a grid node at every pixel in a small window around them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.ndimage import distance_transform_edt
from scipy.sparse import csr_matrix
from scipy.spatial import Delaunay

from stillmotion.engine import face_model as fm

#: Fixed-point iterations of the inversion: the error shrinks geometrically with the field's
#: gradient; three reach sub-pixel accuracy wherever the warp does not fold.
_INVERSION_STEPS = 3
#: Below this backward displacement (pixels) a grid node counts as still: its pixels are the photo's.
_STILL = 0.02
#: Sub-node bits of the rasteriser that locates grid nodes (``cv2.fillConvexPoly``'s ``shift``).
_RASTER_BITS = 8
#: How far (in barycentric weight) a node may lie outside the triangle drawn over it before a
#: neighbouring triangle is preferred: rasterised edges spill a fraction of a node over.
_EDGE_TOLERANCE = 1e-9


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


@dataclass(frozen=True)
class _Detail:
    """A window of the photo warped at full resolution: a grid node at every pixel of
    ``[top, top + h) x [left, left + w)``, for features finer than the coarse grid (lids a few
    pixels apart)."""

    left: int
    top: int
    grid: np.ndarray
    """``(h, w, 2)``: each node's pixel coordinates (x, y)."""
    blend: csr_matrix
    feather: np.ndarray
    """``(h, w)``: 0 at the window's edge, rising to 1 inside it, where the window's map replaces the
    coarse one (so the two meet without a seam)."""


class MeshWarp:
    """Backward remap tables for a fixed triangle mesh over ``source`` vertices on a ``(w, h)`` image.

    ``triangles`` (``(t, 3)`` indices into ``source``) are drawn in order: where two overlap, the later
    one owns the pixels, so a mesh that folds in the photo itself (a cheek past the nose of a turned
    head) is listed back to front. Without ``triangles`` the mesh is the Delaunay triangulation of
    ``source``. The mesh should cover the image (anchors outside the frame do that); a grid node on no
    triangle takes the nearest triangle's weights, clamped to it. ``detail`` boxes ``(x0, y0, x1, y1)``
    of the photo are warped at full resolution instead of through the coarse grid.
    """

    def __init__(
        self,
        source: np.ndarray,
        size: tuple[int, int],
        step: int,
        triangles: np.ndarray | None = None,
        detail: Sequence[tuple[int, int, int, int]] = (),
    ):
        width, height = size
        self.size = size
        self.step = step
        self.source = source.astype(np.float64)
        self.triangles = (
            Delaunay(self.source).simplices if triangles is None else np.asarray(triangles, np.int64)
        )
        # One node beyond each edge, so every pixel lies between nodes and the upsampling below
        # interpolates, never clamps, at the border.
        gw, gh = -(-width // step) + 2, -(-height // step) + 2
        self._grid_shape = (gh, gw)
        # Nodes sit at block centres, which makes cv2.resize by ``step`` land exactly on pixels.
        origin = -0.5 * step - 0.5
        xs, ys = origin + step * np.arange(gw), origin + step * np.arange(gh)
        self._blend = _blend_matrix(self.source, self.triangles, np.array([origin, origin]), step, (gh, gw))
        self._nodes = np.stack(np.meshgrid(xs, ys), -1).astype(np.float32)
        # Converts pixel positions to the coarse grid's own (node index) coordinates.
        self._unit = np.float32(1.0 / step)
        self._origin = np.float32(origin)
        self._details = tuple(self._detail(box) for box in detail)

    def _detail(self, box: tuple[int, int, int, int]) -> _Detail:
        width, height = self.size
        x0, y0 = max(int(box[0]), 0), max(int(box[1]), 0)
        x1, y1 = min(int(box[2]), width), min(int(box[3]), height)
        shape = (max(y1 - y0, 1), max(x1 - x0, 1))
        blend = _blend_matrix(self.source, self.triangles, np.array([x0, y0], float), 1, shape)
        # Feathered over one coarse block: there the coarse map is as good as the fine one.
        rows, cols = np.arange(shape[0]), np.arange(shape[1])
        inset = np.minimum.outer(np.minimum(rows, rows[::-1]), np.minimum(cols, cols[::-1]))
        feather = np.clip((inset + 1) / (self.step + 1), 0.0, 1.0).astype(np.float32)
        grid = np.stack(np.meshgrid(x0 + cols, y0 + rows), -1).astype(np.float32)
        return _Detail(x0, y0, grid, blend, feather)

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
        motion = cv2.resize(_l1(back[rows, cols]), size, interpolation=cv2.INTER_LINEAR)
        width, height = self.size
        # Pixel p of ``dense`` lies at image coordinate p + (first node - 1) * step.
        y0, x0 = (rows.start - 1) * step, (cols.start - 1) * step
        top, left = max(y0 + step // 2, 0), max(x0 + step // 2, 0)
        bottom = min(y0 + dense.shape[0] - step // 2, height)
        right = min(x0 + dense.shape[1] - step // 2, width)
        window = (slice(top - y0, bottom - y0), slice(left - x0, right - x0))
        return MovingRegion(dense[window], slice(top, bottom), slice(left, right), motion[window])

    def _refine(self, region: MovingRegion, target: np.ndarray) -> MovingRegion:
        """``region`` with its map over each detail window replaced (feathered in) by the window's
        own, inverted at full resolution with the coarse map as its first guess."""
        if not self._details:
            return region
        moved = (target - self.source).astype(np.float32)
        for detail in self._details:
            height, width = detail.feather.shape
            forward = np.asarray(detail.blend @ moved).reshape(height, width, 2)
            # The window lands where its mean displacement takes it, to the pixel; within the region.
            shift = np.round(forward.reshape(-1, 2).mean(0)).astype(int)
            x0, y0 = detail.left + shift[0], detail.top + shift[1]
            top, bottom = max(y0, region.rows.start), min(y0 + height, region.rows.stop)
            left, right = max(x0, region.cols.start), min(x0 + width, region.cols.stop)
            if bottom <= top or right <= left:
                continue
            inside = (slice(top - y0, bottom - y0), slice(left - x0, right - x0))
            window = (
                slice(top - region.rows.start, bottom - region.rows.start),
                slice(left - region.cols.start, right - region.cols.start),
            )
            nodes = detail.grid[inside] + shift.astype(np.float32)
            coarse = region.map[window]
            position = coarse
            for _ in range(_INVERSION_STEPS):  # photo point = output point - D(photo point)
                at = position - detail.grid[0, 0]
                position = nodes - cv2.remap(
                    forward, at, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
                )
            region.map[window] = coarse + detail.feather[inside][..., None] * (position - coarse)
        return region

    def backward_map(self, target: np.ndarray) -> np.ndarray:
        """Full-resolution map ``(h, w, 2)``: for each output pixel, where to sample the photo."""
        gh, gw = self._grid_shape
        region = self._dense(self.backward_field(target), slice(0, gh), slice(0, gw))
        return self._refine(region, target).map

    def moving_map(self, target: np.ndarray) -> MovingRegion | None:
        """The backward map over just the region that moves when vertices go to ``target`` (outside
        it the map is the identity), or ``None`` when nothing moves."""
        back = self.backward_field(target)
        moving = (np.abs(back[..., 0]) > _STILL) | (np.abs(back[..., 1]) > _STILL)
        if not moving.any():
            return None
        moving_rows, moving_cols = np.flatnonzero(moving.any(1)), np.flatnonzero(moving.any(0))
        gh, gw = self._grid_shape
        # Still nodes of margin: one to interpolate toward, one where the upsampling clamps.
        rows = slice(max(int(moving_rows[0]) - 2, 0), min(int(moving_rows[-1]) + 3, gh))
        cols = slice(max(int(moving_cols[0]) - 2, 0), min(int(moving_cols[-1]) + 3, gw))
        return self._refine(self._dense(back, rows, cols), target)

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
        before, after = _signed_areas(self.source, self.triangles), _signed_areas(target, self.triangles)
        return int(((before * after) < 0).sum())


def remap(photo: np.ndarray, backward: np.ndarray | tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Sample the photo through a backward map (float, or ``MovingRegion.fixed_point``); the border
    reflects, so no black wedges appear.

    A float map is passed as one two-channel array: OpenCV's fast path, about 3x quicker than x and y
    maps given apart."""
    first, second = backward if isinstance(backward, tuple) else (backward, None)
    return cv2.remap(photo, first, second, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)


def _l1(vectors: np.ndarray) -> np.ndarray:
    """``|x| + |y|`` of each 2D vector (last axis): numpy's reductions over an axis of two are
    about ten times slower than this sum of its two planes, and it runs on every frame's grid."""
    return np.abs(vectors[..., 0]) + np.abs(vectors[..., 1])


def _cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The 2D cross product ``u × v`` over the last axis."""
    return u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]


def _signed_areas(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Twice each triangle's signed area: positive when it is wound clockwise on screen (y down)."""
    a, b, c = vertices[triangles[:, 0]], vertices[triangles[:, 1]], vertices[triangles[:, 2]]
    return _cross(b - a, c - a)


def _barycentric(points: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """Barycentric weights ``(..., 3)`` of ``points`` ``(..., 2)`` in triangles ``corners``
    ``(..., 3, 2)``; not finite for a degenerate triangle."""
    a, b, c = corners[..., 0, :], corners[..., 1, :], corners[..., 2, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        total = _cross(b - a, c - a)
        wb = _cross(points - a, c - a) / total
        wc = _cross(b - a, points - a) / total
    return np.stack([1 - wb - wc, wb, wc], -1)


def _blend_matrix(
    source: np.ndarray, triangles: np.ndarray, origin: np.ndarray, step: int, shape: tuple[int, int]
) -> csr_matrix:
    """The sparse ``(nodes, vertices)`` matrix that turns vertex motion into the motion of each node
    of a grid (``_locate_nodes``): each node's is the barycentric blend of its triangle's three
    vertices, three entries a row."""
    owner, weights = _locate_nodes(source, triangles, origin, step, shape)
    rows = np.repeat(np.arange(len(owner)), 3)
    return csr_matrix(
        (weights.ravel().astype(np.float32), (rows, triangles[owner].ravel())),
        shape=(len(owner), len(source)),
    )


def _locate_nodes(
    source: np.ndarray, triangles: np.ndarray, origin: np.ndarray, step: int, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """For every node of the grid ``origin + step * (column, row)`` of ``shape`` (rows, columns),
    in row-major order: the triangle it lies in and its barycentric weights ``(n, 3)``.

    The triangles' indices are rasterised at node resolution (``cv2.fillConvexPoly`` with sub-node
    precision), in order, so later triangles win where triangles overlap; then the weights follow
    in one vectorised pass. A node the rasteriser left outside every triangle, or put on a spilled
    edge just outside the triangle drawn there, takes whichever triangle drawn around it (its 3x3
    neighbourhood, and the triangle of the nearest covered node) contains it best; a node that none
    contains takes its weights in the best of them, clamped into it.
    """
    rows, cols = shape
    corners = source[triangles]
    fixed = np.round((corners - origin) / step * (1 << _RASTER_BITS)).astype(np.int32)
    labels = np.full(shape, -1, np.int32)
    # A degenerate triangle covers no node, and drawn it would be a line over its neighbours.
    for index in np.flatnonzero(_signed_areas(source, triangles) != 0):
        cv2.fillConvexPoly(labels, fixed[index], int(index), lineType=cv2.LINE_8, shift=_RASTER_BITS)
    if (labels < 0).all():
        raise ValueError("the mesh covers no node of the grid")
    nodes = origin + step * np.stack(np.meshgrid(np.arange(cols), np.arange(rows)), -1).reshape(-1, 2)
    owner = labels.ravel()
    weights = _barycentric(nodes, corners[np.maximum(owner, 0)])
    stray = np.flatnonzero((owner < 0) | ~(weights.min(1) >= -_EDGE_TOLERANCE))
    if not len(stray):
        return owner, weights
    r, c = np.divmod(stray, cols)
    padded = np.pad(labels, 1, constant_values=-1)
    candidates = [padded[r + dr, c + dc] for dr in range(3) for dc in range(3)]
    uncovered = labels < 0
    if uncovered.any():
        nearest = distance_transform_edt(uncovered, return_distances=False, return_indices=True)
        candidates.append(labels[nearest[0], nearest[1]].ravel()[stray])
    choice = np.stack(candidates, 1)  # (stray, candidates)
    trial = _barycentric(nodes[stray, None], corners[np.maximum(choice, 0)])
    score = np.where(choice >= 0, trial.min(-1), -np.inf)
    score[~np.isfinite(score)] = -np.inf  # a degenerate candidate
    best = score.argmax(1)
    picked = np.arange(len(stray))
    owner[stray] = choice[picked, best]
    best_weights = trial[picked, best]
    # Outside every candidate: clamped into the best one (weights cut at 0 and renormalised).
    clamped = np.clip(np.nan_to_num(best_weights, nan=1 / 3), 0.0, None)
    clamped /= np.maximum(clamped.sum(1, keepdims=True), 1e-12)
    outside = score[picked, best] < -_EDGE_TOLERANCE
    weights[stray] = np.where(outside[:, None], clamped, best_weights)
    return owner, weights


class HeadRig:
    """The mesh of a photo: its vertices (face landmarks, a ring around the head, points on the body,
    background points around them, anchors outside the frame) and its triangles.

    The head ring is fitted to the photo's own head: along rays from the face centre it lies just
    outside the person mask (so all of the hair is inside it and moves with the head), and hugs the
    jaw below the ears, where the neck joins the body. Each ring point moves as the face outline
    nearest to it does, fully above the chin and by a share below it (eased across a band). Body
    points (a grid over the person outside the head) move *rigidly*, by a damped share of the head's
    travel, so shoulders and torso sway with the head instead of stretching toward it (with
    ``body_sway`` off the body stays still, rigid too).
    Background points and the anchors outside the frame stay still: whatever the mesh stretches
    there, the compositor replaces with the still background plate.

    Triangles (``triangles``, back to front, as ``MeshWarp`` takes them):

    * inside the face oval, MediaPipe's canonical face mesh (Kartynnik et al. 2019;
      ``face_model.canonical_triangles``), whose topology follows the face's features, not the
      accidents of a Delaunay triangulation of their projection (which makes near-degenerate slivers
      that flip under the slightest motion, and joins iris points to lid points). Its eye and mouth
      openings are filled by strips between their lids and lips (what shows in an eye's opening is
      repainted afterwards by ``eyes.EyeInterior``, the iris included). Triangles the photo shows
      from behind or edge-on (past the silhouette of a turned cheek, or the inner-lip strip of a
      closed mouth) are left out: they cover no pixel the photo shows, so they cannot carry its
      texture, and the face's front triangles overlapping them are drawn nearest last (painter's
      order by FaceMesh depth);
    * outside it, a Delaunay triangulation of the face oval with the other vertices, less its
      triangles inside the oval. The oval's segments must be edges of that triangulation, for the two
      tilings to meet without overlap: a segment that is not is split at its midpoint until it is
      (boundary recovery by splitting encroached segments, as in Ruppert's refinement; a split point
      stays on its segment, so the face's triangle along it warps continuously with it).

    Per frame (``vertices``) the target landmarks' lips and lids are first kept in order
    (``Untangler``), and what folds remain in the face's triangles projected
    away (``_Unfolder``): the retargeted landmarks ask for folds a warp can only draw as dark notches
    and smears. ``source`` is ``vertices(photo_landmarks)``: at rest every vertex is exactly where it
    started. ``mesh(step)`` builds the warp, with the eyes (``detail``) at full resolution.
    """

    RAYS = 48
    #: How far the head silhouette is searched for, and where the outer ring lies, in face radii.
    SEARCH, OUTER_GAP = 3.0, 1.6
    HEAD_FOLLOW, NECK_FOLLOW = 1.0, 0.8
    #: Height of the band around the chin over which the ring's follow eases from head to neck, in
    #: face radii.
    NECK_BAND = 0.5
    #: How far the full-resolution box around each eye reaches beyond it (x, y), in eye widths.
    DETAIL_MARGIN = (0.35, 0.5)
    #: Share of the head's travel the body takes (x, y): a sway, not a copy of the head's motion.
    BODY_FOLLOW = np.array([0.25, 0.12])
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
        # From the head's follow to the neck's across a band around the chin: a step between two
        # neighbouring ring points would kink the ring and fold the triangles hanging from it.
        chin, band = photo_landmarks[fm.CHIN, 1], 0.5 * self.NECK_BAND * radius
        follow = np.interp(head[:, 1], [chin - band, chin + band], [self.HEAD_FOLLOW, self.NECK_FOLLOW])
        self._head_follow = follow[:, None]
        # The ring moves as the nearest outline point does, not by the outline's best similarity:
        # the outline carries the head's turn in depth (one side of a yawing face narrows, the other
        # widens) and the jaw's motion (a head tilting back squashes the jaw upward), which no 2D
        # similarity captures; moved by one, the hair and skin between outline and ring were
        # stretched on one side and squeezed on the other (a bulge of skin beside the jaw, hair
        # pulled off a turning cheek).
        self._nearest_oval = np.argmin(np.linalg.norm(head[:, None] - oval[None], axis=2), axis=1)
        self._body = body
        self._body_follow = self.BODY_FOLLOW if body_sway else np.zeros(2)
        self._still = np.concatenate([outer, anchors])
        self._untangle = Untangler(lm2)
        # Vertex order: landmarks, head ring, body, still points, oval split points.
        placed = self._place(photo_landmarks)
        face = np.concatenate(
            [
                fm.canonical_triangles(),
                _ladder(fm.UPPER_INNER_LIP, fm.LOWER_INNER_LIP),
                *(_ladder(upper, lower) for upper, lower in fm.EYE_LIDS),
            ]
        )
        depth = np.concatenate([photo_landmarks[:, 2], np.full(len(placed) - len(lm2), np.nan)])
        face = face[_signed_areas(placed, face) > 0]
        self._unfold = _Unfolder(placed, face)
        outside = np.arange(len(lm2), len(lm2) + len(head) + len(body) + len(self._still))
        self._splits, around = _around_face(placed, fm.FACE_OVAL, outside, len(placed))
        self.source = self.vertices(photo_landmarks)
        self.size = size
        #: The boxes ``MeshWarp`` warps at full resolution: each eye, with the skin a blink moves.
        self.detail = tuple(_grown_box(lm2[np.concatenate(lids)], self.DETAIL_MARGIN) for lids in fm.EYE_LIDS)
        # Painter's order: the farthest first (FaceMesh z grows away from the camera).
        far_first = np.argsort(-depth[face].mean(1), kind="stable")
        self.triangles = np.concatenate([around, face[far_first]])

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

    def mesh(self, step: int) -> MeshWarp:
        """The rig's warp on a coarse grid of ``step`` pixels, its ``detail`` at full resolution."""
        return MeshWarp(self.source, self.size, step, self.triangles, self.detail)

    def vertices(self, target_landmarks: np.ndarray) -> np.ndarray:
        """Target positions of every mesh vertex for the given target face landmarks: the lips and
        lids untangled (``Untangler``), and what folds remain in the face's triangles projected away."""
        placed = self._unfold(self._place(target_landmarks))
        return np.concatenate([placed, self._splits.place(placed)])

    def _place(self, target_landmarks: np.ndarray) -> np.ndarray:
        """Every vertex but the oval's split points, before the face is unfolded."""
        tgt2 = self._untangle(target_landmarks[:, :2])
        outline = tgt2[fm.FACE_OVAL]
        moved_head = self._head + self._head_follow * (outline - self._oval)[self._nearest_oval]
        head_motion = fm.fit_similarity(self._oval, outline)
        travel = head_motion.apply(self._centre[None])[0] - self._centre
        moved_body = self._body + self._body_follow * travel
        return np.concatenate([tgt2, moved_head, moved_body, self._still])


# --------------------------------------------------------------------------------------------------
# Folds undone before they are drawn


@dataclass(frozen=True)
class _Order:
    """Points ``above`` stay above points ``below`` (pairwise) along the face's down axis, by at least
    ``keep`` of their gap in the photo. A shortfall lifts ``above`` by ``lift`` of it and lowers
    ``below`` by the rest."""

    above: np.ndarray
    below: np.ndarray
    keep: float
    lift: float


_LIDS = (
    np.concatenate([fm.RIGHT_EYE_UPPER[1:-1], fm.LEFT_EYE_UPPER[1:-1]]),
    np.concatenate([fm.RIGHT_EYE_LOWER[1:-1], fm.LEFT_EYE_LOWER[1:-1]]),
)
_UPPER, _LOWER = fm.UPPER_LIP_RINGS, fm.LOWER_LIP_RINGS
#: Share of its gap in the photo that each ring of the lips keeps from the next.
_LIP_KEEP = 0.3
#: The orders, in stages: the rules of a stage move points no other rule of it reads, so a stage is
#: applied at once, and the stages in turn. The inner lips may meet, never cross (moved half each,
#: as lips press together). A retargeted wide-open mouth pushes the lower lip past the lip–chin
#: crease (the photo's lip lies nearer its crease than the driving face's), which would fold a dark
#: notch into the chin: the crease gives way, pushed down ahead of the lip as the jaw carries both,
#: and the lip keeps its target (lifted instead, it was squeezed to a pale line over the tongue and
#: the mouth drawn less open than meant). Up the lower lip from its outer ring, and down the upper
#: lip from the nose, each ring keeps its place, moving only the ring nearer the mouth, so no rule
#: undoes the one before, and the inner lips never roll over the outer. The upper lid stays above
#: the lower: a blink deeper than the photo's lid gap would otherwise fold the lid over the eye.
_STAGES = (
    (
        _Order(_UPPER[0], _LOWER[0], keep=0.1, lift=0.5),
        _Order(_LOWER[3, 2:-2], fm.LIP_CHIN_CREASE, keep=_LIP_KEEP, lift=0.0),
        _Order(_UPPER[3], _UPPER[2], keep=_LIP_KEEP, lift=0.0),
        _Order(*_LIDS, keep=0.1, lift=1.0),
    ),
    *(
        (
            _Order(_LOWER[k], _LOWER[k + 1], keep=_LIP_KEEP, lift=1.0),
            _Order(_UPPER[k + 1], _UPPER[k], keep=_LIP_KEEP, lift=0.0),
        )
        for k in (2, 1)
    ),
    (_Order(_LOWER[0], _LOWER[1], keep=_LIP_KEEP, lift=1.0),),
)


def _down_axis(points: np.ndarray) -> np.ndarray:
    """The face's unit down axis: perpendicular to the line between the outer eye corners (which
    neither an open jaw nor a blink moves)."""
    across = points[fm.LEFT_EYE_CORNERS[0]] - points[fm.RIGHT_EYE_CORNERS[0]]
    across = across / max(float(np.linalg.norm(across)), 1e-9)
    return np.array([-across[1], across[0]])


class Untangler:
    """Keeps a face's lips and lids in order along its down axis (``_STAGES``), so retargeted motion
    larger than the photo's face allows squeezes them instead of folding one over the other.

    Built once from the photo's landmarks ``rest`` (each gap's least width is a share of its width
    there, scaled with the face); called on target landmarks ``(478, 2)``, returns them untangled. A
    gap the photo itself has crossed is held at its own width, so the photo's landmarks come back
    unchanged."""

    def __init__(self, rest: np.ndarray):
        self._rest_scale = max(fm.interocular(rest), 1e-9)
        down = _down_axis(rest)
        self._stages = []
        for stage in _STAGES:
            above = np.concatenate([order.above for order in stage])
            below = np.concatenate([order.below for order in stage])
            gap = (rest[below] - rest[above]) @ down
            keep = np.concatenate([np.full(len(order.above), order.keep) for order in stage])
            lift = np.concatenate([np.full(len(order.above), order.lift) for order in stage])
            self._stages.append((above, below, np.minimum(keep * gap, gap), lift[:, None]))

    def __call__(self, target: np.ndarray) -> np.ndarray:
        points = np.array(target, dtype=np.float64)
        down = _down_axis(points)
        scale = fm.interocular(points) / self._rest_scale
        for above, below, least, lift in self._stages:
            short = np.maximum(least * scale - (points[below] - points[above]) @ down, 0.0)[:, None] * down
            points[above] -= lift * short
            points[below] += (1 - lift) * short
        return points


class _Unfolder:
    """Undoes the folds left in the face's own triangles once the lips and lids are untangled
    (``Untangler``): tracking noise on a sliver a pixel wide, a mouth corner squeezed past its
    neighbour, a cheek turned edge-on.

    Each triangle's signed area is a constraint: at least ``LEAST`` of its area in the photo. It is
    solved by position-based projection (Müller et al., "Position Based Dynamics", 2007): a triangle
    below half of that moves its three vertices along the area's gradient by the least amount that
    restores it, the moves meeting at a vertex averaged (Jacobi) and over-relaxed by ``RELAX`` (which
    cuts the rounds needed about fourfold), until no triangle is below. Only folded or nearly folded
    triangles move anything: the rest of the face is exactly the target."""

    ROUNDS = 16
    LEAST = 0.05
    RELAX = 1.5

    def __init__(self, rest: np.ndarray, triangles: np.ndarray):
        self._triangles = triangles
        self._corners = np.ascontiguousarray(triangles.T)  # three index rows: gathers run faster
        self._least = self.LEAST * _signed_areas(rest, triangles)

    def __call__(self, points: np.ndarray) -> np.ndarray:
        x, y = np.array(points[:, 0], dtype=np.float64), np.array(points[:, 1], dtype=np.float64)
        count = len(x)
        a, b, c = self._corners
        for _ in range(self.ROUNDS):
            xa, xb, xc, ya, yb, yc = x[a], x[b], x[c], y[a], y[b], y[c]
            area = (xb - xa) * (yc - ya) - (yb - ya) * (xc - xa)
            # Hysteresis: restored to the full margin, released at half of it, so the rounds end.
            folded = np.flatnonzero(area < 0.5 * self._least)
            if not len(folded):
                break
            # The gradient of (b - a) × (c - a) with respect to each corner is the opposite edge
            # turned a quarter, (dx, dy) -> (dy, -dx): for a, b - c; for b, c - a; for c, a - b.
            ex = np.stack([xb - xc, xc - xa, xa - xb], 1)[folded]
            ey = np.stack([yb - yc, yc - ya, ya - yb], 1)[folded]
            step = (self._least[folded] - area[folded]) / (ex**2 + ey**2).sum(1)
            at = self._triangles[folded].ravel()
            shared = np.maximum(np.bincount(at, minlength=count), 1) / self.RELAX
            x += np.bincount(at, (step[:, None] * ey).ravel(), minlength=count) / shared
            y -= np.bincount(at, (step[:, None] * ex).ravel(), minlength=count) / shared
        return np.stack([x, y], 1)


# --------------------------------------------------------------------------------------------------
# The rig's own triangles: the eye and mouth openings, the face oval's surroundings


def _ladder(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Triangles of the strip between two chains of equal length that run side by side: quad ``k``
    is ``first[k], first[k+1], second[k+1], second[k]``, cut along a diagonal. Wound clockwise on
    screen when ``first`` runs along the strip's top left to right; a quad whose chains share a
    corner gives one triangle."""
    a, b = first[:-1], first[1:]
    c, d = second[1:], second[:-1]
    triangles = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
    keep = (
        (triangles[:, 0] != triangles[:, 1])
        & (triangles[:, 1] != triangles[:, 2])
        & (triangles[:, 0] != triangles[:, 2])
    )
    return triangles[keep]


@dataclass(frozen=True)
class _SegmentPoints:
    """Points on segments of a closed chain of landmarks: point ``k`` lies ``share[k]`` of the way
    from landmark ``start[k]`` to landmark ``end[k]``."""

    start: np.ndarray
    end: np.ndarray
    share: np.ndarray

    def place(self, points: np.ndarray) -> np.ndarray:
        s = self.share[:, None]
        return (1 - s) * points[self.start] + s * points[self.end]


#: Rounds of oval segment splitting: each halves the pieces still missing; one is rarely needed.
_RECOVERY_ROUNDS = 6


def _inside(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Whether each point ``(n, 2)`` lies inside the closed ``polygon`` ``(m, 2)`` (even-odd rule)."""
    x, y = points[:, :1], points[:, 1:]
    x0, y0 = polygon[:, 0], polygon[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    straddles = (y0 > y) != (y1 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        crossing = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
    return ((straddles & (x < crossing)).sum(1) % 2).astype(bool)


def _around_face(
    vertices: np.ndarray, oval: np.ndarray, outside: np.ndarray, first: int
) -> tuple[_SegmentPoints, np.ndarray]:
    """The triangles around the face: a Delaunay triangulation of the face ``oval`` (landmark
    indices, going round) with the ``outside`` vertices, less its triangles inside the oval.

    Each oval segment must be an edge, so that these triangles and the face's meet without overlap;
    a segment that is not is split at its midpoint, and the triangulation redone, until every piece
    is (a piece short enough has an empty diametral circle, which makes it a Delaunay edge). Returns
    the split points (numbered from ``first``) and the triangles.
    """
    segment = np.arange(len(oval))
    share = np.zeros(len(oval))
    outside = outside[~_inside(vertices[outside], vertices[oval])]  # none, unless a ring point strays
    for attempt in range(_RECOVERY_ROUNDS + 1):
        start, end = oval[segment], oval[(segment + 1) % len(oval)]
        ring = (1 - share)[:, None] * vertices[start] + share[:, None] * vertices[end]
        points = np.concatenate([ring, vertices[outside]])
        simplices = Delaunay(points).simplices
        n = len(points)
        edges = np.sort(simplices[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), 1)
        wanted = np.sort(np.stack([np.arange(len(ring)), (np.arange(len(ring)) + 1) % len(ring)], 1), 1)
        missing = ~np.isin(wanted[:, 0] * n + wanted[:, 1], edges[:, 0] * n + edges[:, 1])
        # Past the last round a piece still missing overlaps the face a little: the rasteriser
        # draws the face over it, so the warp stays whole.
        if not missing.any() or attempt == _RECOVERY_ROUNDS:
            break
        following = np.roll(share, -1)
        following[np.roll(segment, -1) != segment] = 1.0
        at = np.flatnonzero(missing)
        segment = np.insert(segment, at + 1, segment[at])
        share = np.insert(share, at + 1, (share[at] + following[at]) / 2)
    split = share > 0
    splits = _SegmentPoints(oval[segment[split]], oval[(segment[split] + 1) % len(oval)], share[split])
    numbers = np.concatenate([oval[segment], outside])
    numbers[np.flatnonzero(split)] = first + np.arange(int(split.sum()))
    kept = simplices[~_inside(points[simplices].mean(1), ring)]
    # Wound like the face's triangles (positive), for a consistent mesh.
    kept = np.where((_signed_areas(points, kept) < 0)[:, None], kept[:, [0, 2, 1]], kept)
    return splits, numbers[kept]


def _grown_box(points: np.ndarray, margin: tuple[float, float]) -> tuple[int, int, int, int]:
    """The bounding box ``(x0, y0, x1, y1)`` of ``points``, grown on each side by ``margin`` (x, y) of
    its width, in whole pixels."""
    (x0, y0), (x1, y1) = points.min(0), points.max(0)
    grow = np.array(margin) * (x1 - x0)
    return (
        int(np.floor(x0 - grow[0])),
        int(np.floor(y0 - grow[1])),
        int(np.ceil(x1 + grow[0])) + 1,
        int(np.ceil(y1 + grow[1])) + 1,
    )


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
