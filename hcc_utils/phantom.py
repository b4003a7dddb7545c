"""The synthetic CT phantom: body, liver, vessels and one tumour rendered from its image parameters, per centre.

:func:`render_patient` turns one patient's true image parameters (:func:`hcc_utils.synthetic.simulate_tables`) into
arterial and portal volumes and the tumour mask on the centre's grid (:data:`CENTRES`); :func:`patient_job` writes
them as NIfTI. Each patient's images come from a generator seeded with ``(seed, patient index)``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

#: Per-centre acquisition: voxel grid (x, y, z), spacing (mm), noise SD (HU), arterial contrast factor, kernel
#: blur (mm) and, optionally, a calibration offset added to every HU (``hu_offset``). Centre 3 is made only on
#: request (:mod:`hcc_utils.synthetic`, ``n_external``).
CENTRES: dict[int, dict[str, Any]] = {
    1: {"size": (128, 128, 36), "spacing": (3.0, 3.0, 5.0), "noise": 11.0, "contrast": 1.00, "psf": 1.2},
    2: {"size": (136, 136, 45), "spacing": (2.8, 2.8, 4.0), "noise": 15.0, "contrast": 0.90, "psf": 1.4},
    3: {"size": (120, 120, 40), "spacing": (3.2, 3.2, 4.5), "noise": 18.0, "contrast": 1.05, "psf": 1.0,
        "hu_offset": 12.0},
}

def _grid(centre: int, shift: np.ndarray):
    c = CENTRES[centre]
    nx, ny, nz = c["size"]
    sx, sy, sz = c["spacing"]
    origin = np.array([-(nx - 1) / 2 * sx, -(ny - 1) / 2 * sy, -(nz - 1) / 2 * sz]) + shift
    origin = np.round(origin, 2)
    x = (origin[0] + np.arange(nx) * sx).astype(np.float32)
    y = (origin[1] + np.arange(ny) * sy).astype(np.float32)
    zz = (origin[2] + np.arange(nz) * sz).astype(np.float32)
    return x, y, zz, origin


def _ellipsoid(X, Y, Z, c, axes):
    return ((X - c[0]) / axes[0]) ** 2 + ((Y - c[1]) / axes[1]) ** 2 + ((Z - c[2]) / axes[2]) ** 2


def _tube(X, Y, Z, p0, p1, r):
    """Mask of a cylinder of radius r (mm) around the segment p0-p1 (X, Y, Z: broadcastable axis vectors)."""
    p0, p1 = np.asarray(p0, np.float32), np.asarray(p1, np.float32)
    x, y, z = X.ravel(), Y.ravel(), Z.ravel()
    out = np.zeros((len(z), len(y), len(x)), bool)
    lo, hi = np.minimum(p0, p1) - r, np.maximum(p0, p1) + r
    sl = [slice(int(np.searchsorted(c, lo[k])), int(np.searchsorted(c, hi[k], side="right")))
          for k, c in ((2, z), (1, y), (0, x))]
    if any(s_.stop <= s_.start for s_ in sl):
        return out
    bz, by, bx = z[sl[0]][:, None, None], y[sl[1]][None, :, None], x[sl[2]][None, None, :]
    d = p1 - p0
    L2 = max(float(d @ d), 1e-6)
    t = np.clip(((bx - p0[0]) * d[0] + (by - p0[1]) * d[1] + (bz - p0[2]) * d[2]) / L2, 0, 1)
    dist2 = (bx - p0[0] - t * d[0]) ** 2 + (by - p0[1] - t * d[1]) ** 2 + (bz - p0[2] - t * d[2]) ** 2
    out[tuple(sl)] = dist2 <= r * r
    return out


def _smooth_noise(rng, shape, sigma_vox, sd=1.0):
    """Gaussian-filtered white noise with standard deviation ``sd`` (fields smoother than 2 voxels are made on a
    coarser grid and interpolated)."""
    from scipy.ndimage import gaussian_filter, zoom

    sigma_vox = np.broadcast_to(np.asarray(sigma_vox, dtype=float), (3,))
    f_ = np.maximum(1, np.floor(sigma_vox / 2.0)).astype(int)
    if (f_ > 1).any():
        small = tuple(int(np.ceil(n / f)) + 1 for n, f in zip(shape, f_))
        g = gaussian_filter(rng.standard_normal(small).astype(np.float32), sigma_vox / f_, mode="wrap")
        f = zoom(g, [n / m for n, m in zip(shape, small)], order=1)[: shape[0], : shape[1], : shape[2]]
        f = np.pad(f, [(0, n - m) for n, m in zip(shape, f.shape)], mode="edge")
    else:
        f = gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma_vox, mode="wrap")
    s = float(f.std())
    return f * (sd / s if s > 0 else 0.0)


def _unit(rng, k=1):
    v = rng.standard_normal((k, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def render_patient(params: dict[str, Any], centre: int, seed: int, index: int):
    """Render the AP and PP volumes and the tumour mask of one patient.

    Parameters
    ----------
    params : dict
        The patient's row of :func:`cohort_tables` (image parameters are read from it).
    centre : int
        1, 2 or 3 (the acquisition, :data:`CENTRES`).
    seed, index : int
        Master seed and the patient's index: the patient's generator is seeded with ``(seed, index)``.

    Returns
    -------
    ap, pp : numpy.ndarray of int16, shape (z, y, x)
    mask : numpy.ndarray of uint8, shape (z, y, x)
    geometry : dict
        ``origin`` and ``spacing`` (x, y, z) in mm and facts about the rendered tumour.
    """
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x1A6, int(index)]))
    acq = CENTRES[centre]
    sp = np.array(acq["spacing"], dtype=float)
    shift = rng.uniform(-8, 8, 3)
    x, y, z, origin = _grid(centre, shift)
    Z, Y, X = z[:, None, None], y[None, :, None], x[None, None, :]
    shape = (len(z), len(y), len(x))
    sig_vox = lambda mm: (mm / sp[2], mm / sp[1], mm / sp[0])  # noqa: E731

    # body: elliptical cross-section, subcutaneous fat, soft tissue
    a, b = rng.uniform(145, 170), rng.uniform(105, 122)
    fat = rng.uniform(12, 28)
    body2d = (X[0] / a) ** 2 + ((Y[0] - 5) / b) ** 2 <= 1
    inner2d = (X[0] / (a - fat)) ** 2 + ((Y[0] - 5) / (b - fat)) ** 2 <= 1
    base = np.full(shape, -1000.0, dtype=np.float32)
    base[:, body2d] = -100.0
    base[:, inner2d] = 35.0
    base += np.where(inner2d[None], _smooth_noise(rng, shape, sig_vox(6.0), 8.0), 0).astype(np.float32)
    # bowel gas pockets (left anterior abdomen)
    for _ in range(rng.integers(2, 6)):
        c = (rng.uniform(10, 90), rng.uniform(-80, -30), rng.uniform(-80, 60))
        base[_ellipsoid(X, Y, Z, c, rng.uniform(6, 16, 3)) <= 1] = -750.0
    # spine: vertebral body with discs, canal, posterior element
    sy0 = b * 0.62
    vert = (X ** 2 + (Y - sy0) ** 2 <= 19.0 ** 2) & np.ones_like(Z, dtype=bool)
    disc = (np.mod(Z - rng.uniform(0, 30), 30.0) < 6.0)
    cortex = vert & ~((X ** 2 + (Y - sy0) ** 2 <= 16.0 ** 2))
    base[vert & ~disc] = 230.0
    base[cortex & ~disc] = 480.0
    base[vert & disc] = 85.0
    post = ((np.abs(X) <= 6) & (Y > sy0 + 28) & (Y < sy0 + 55)) & np.ones_like(Z, dtype=bool)
    base[post] = 420.0
    base[(X ** 2 + (Y - sy0 - 26) ** 2 <= 8.0 ** 2) & np.ones_like(Z, dtype=bool)] = 20.0
    # organs (phase-specific values filled later)
    liver_c = np.array([-55 + rng.uniform(-8, 8), -5 + rng.uniform(-6, 6), 25 + rng.uniform(-10, 10)])
    liver_ax = np.array([rng.uniform(72, 90), rng.uniform(62, 76), rng.uniform(75, 95)])
    lobe_c = liver_c + np.array([rng.uniform(55, 70), rng.uniform(-30, -20), rng.uniform(5, 20)])
    lobe_ax = np.array([rng.uniform(35, 50), rng.uniform(22, 32), rng.uniform(35, 50)])
    lob = _smooth_noise(rng, shape, sig_vox(15.0), 0.08)
    liver = ((_ellipsoid(X, Y, Z, liver_c, liver_ax) + lob <= 1) | (_ellipsoid(X, Y, Z, lobe_c, lobe_ax) + lob <= 1))
    liver &= inner2d[None]
    liver &= ~vert
    spleen = _ellipsoid(X, Y, Z, (rng.uniform(80, 100), rng.uniform(20, 40), rng.uniform(10, 40)),
                        (rng.uniform(35, 45), rng.uniform(25, 32), rng.uniform(45, 60))) <= 1
    spleen &= inner2d[None] & ~liver
    kid = np.zeros(shape, bool)
    for sgn in (-1, 1):
        kid |= _ellipsoid(X, Y, Z, (sgn * rng.uniform(62, 75), sy0 - 5, rng.uniform(-70, -45)), (28, 22, 50)) <= 1
    kid &= ~liver & ~spleen
    aorta = ((X - 14) ** 2 + (Y - sy0 + 32) ** 2 <= rng.uniform(10, 13) ** 2) & np.ones_like(Z, dtype=bool)
    ivc = ((X + 22) ** 2 + (Y - sy0 + 30) ** 2 <= rng.uniform(9, 12) ** 2) & (Z < liver_c[2] + 60)
    pv_root = np.array([-5.0, sy0 - 55, liver_c[2] - 45])
    pv_hil = liver_c + np.array([25, 10, -15])
    portal = _tube(X, Y, Z, pv_root, pv_hil, 7.0)
    for _ in range(3):
        tip = liver_c + rng.uniform(-0.55, 0.55, 3) * liver_ax
        portal |= _tube(X, Y, Z, pv_hil, tip, rng.uniform(2.5, 4.0)) & liver
    hv = np.zeros(shape, bool)
    hv_root = liver_c + np.array([35, 20, 0.8 * liver_ax[2]])
    for _ in range(3):
        tip = liver_c + rng.uniform(-0.6, 0.6, 3) * liver_ax * np.array([1, 1, 0.4])
        hv |= _tube(X, Y, Z, hv_root, tip, rng.uniform(2.5, 4.0)) & liver
    liver_tex = _smooth_noise(rng, shape, sig_vox(4.0), 4.0)

    # tumour: centre deep enough in the liver, lobulated/irregular boundary; computed in a box around it
    R = float(params["diameter_mm"]) / 2.0
    rmax = max(0.0, 1.0 - 0.65 * R / float(liver_ax.min()))
    tc = liver_c + _unit(rng)[0] * rmax * rng.random() ** (1 / 3) * liver_ax
    zlo, zhi = float(z[0]) + 0.7 * R + 5, float(z[-1]) - 0.7 * R - 5
    tc[2] = np.clip(tc[2], min(zlo, (zlo + zhi) / 2), max(zhi, (zlo + zhi) / 2))
    tc = tc.astype(np.float32)
    axes = R * rng.uniform(0.85, 1.15, 3)
    axes *= R / np.prod(axes) ** (1 / 3)  # keep the volume-equivalent diameter
    irr = float(params["irregularity"])
    amp = 0.1 + 0.9 * irr
    half = float(axes.max()) * (1 + 0.8 * amp) * (1 + 12.0 / R) + 15.0
    box = tuple(slice(int(max(0, np.searchsorted(c, tc[k] - half))), int(min(len(c), np.searchsorted(c, tc[k] + half))))
                for k, c in ((2, z), (1, y), (0, x)))
    bz, by, bx = z[box[0]][:, None, None], y[box[1]][None, :, None], x[box[2]][None, None, :]
    bshape = (len(bz), by.shape[1], bx.shape[2])
    th = rng.uniform(0, np.pi)
    c_, s_ = np.float32(np.cos(th)), np.float32(np.sin(th))
    dx, dy, dz = bx - tc[0], by - tc[1], bz - tc[2]
    lx, ly = c_ * dx + s_ * dy, -s_ * dx + c_ * dy
    rho = np.sqrt((lx / axes[0]) ** 2 + (ly / axes[1]) ** 2 + (dz / axes[2]) ** 2) + 1e-6
    dist = np.sqrt(dx ** 2 + dy ** 2 + dz ** 2) + 1e-6
    ux, uy, uz = dx / dist, dy / dist, dz / dist
    pert = np.zeros(bshape, np.float32)
    for j, v in enumerate(_unit(rng, 8)):
        f = rng.uniform(2.0, 3.5) if j < 4 else rng.uniform(5.0, 8.0)
        w = 0.15 if j < 4 else 0.035  # lobulation of several millimetres, finer irregularity
        pert += np.float32(w) * np.cos(np.float32(f * np.pi) * (ux * v[0] + uy * v[1] + uz * v[2])
                                       + np.float32(rng.uniform(0, 2 * np.pi)))
    t = rho / (1.0 + amp * pert)  # < 1 inside
    in_liver = liver[box] | (_ellipsoid(bx, by, bz, liver_c, liver_ax * 1.1) <= 1)
    tum_b = (t < 1.0) & in_liver & inner2d[None][:, box[1], box[2]] & ~vert[box]
    if tum_b.sum() == 0:  # pragma: no cover - guarded by the size limits
        raise RuntimeError(f"patient {index}: empty tumour")
    tumour = np.zeros(shape, bool)
    tumour[box] = tum_b

    # intratumoral structure shared by both phases
    het = float(params["heterogeneity"])
    tex = _smooth_noise(rng, bshape, sig_vox(3.0 + 3.0 * rng.random()), 1.0)
    # necrosis: smooth blobs, more central, more of it in heterogeneous tumours
    nec_field = _smooth_noise(rng, bshape, sig_vox(min(8.0, 0.25 * R)), 1.0) + 1.5 * (0.7 - t)
    necrosis = tum_b & (nec_field > 2.2 - 2.4 * het) & (t < 0.85)
    arteries = np.zeros(bshape, bool)
    if params["artery"]:
        for _ in range(rng.integers(1, 4)):
            p0 = tc + _unit(rng)[0] * R * 1.1
            p1 = tc + _unit(rng)[0] * R * 0.5
            arteries |= _tube(bx, by, bz, p0, p1, rng.uniform(1.5, 2.5)) & (t < 1.05)
    v_peri = _unit(rng)[0]
    peri = ((t >= 1.0) & (t < 1.0 + 12.0 / R) & ((ux * v_peri[0] + uy * v_peri[1] + uz * v_peri[2]) > 0.1)
            & liver[box])
    v_cap = _unit(rng)[0]
    cap = float(params["capsule"])
    capsule = ((t >= 1.0) & (t < 1.0 + 3.0 / R)
               & ((ux * v_cap[0] + uy * v_cap[1] + uz * v_cap[2]) > 1.0 - 2.0 * cap)) if cap > 0 else None
    rim = tum_b & (t >= 0.82) if params["rim"] else None

    contrast = acq["contrast"]
    out = {}
    for phase in ("AP", "PP"):
        img = base.copy()
        if phase == "AP":
            hu = dict(liver=rng.uniform(72, 82), spleen=rng.uniform(100, 130), kid=rng.uniform(160, 200),
                      aorta=rng.uniform(260, 330) * contrast, ivc=rng.uniform(70, 100), portal=rng.uniform(110, 150),
                      hv=rng.uniform(55, 65))
        else:
            hu = dict(liver=rng.uniform(108, 122), spleen=rng.uniform(115, 130), kid=rng.uniform(150, 175),
                      aorta=rng.uniform(140, 170), ivc=rng.uniform(125, 145), portal=rng.uniform(160, 185),
                      hv=rng.uniform(150, 170))
        img[spleen] = hu["spleen"]
        img[kid] = hu["kid"]
        img[liver] = hu["liver"] + liver_tex[liver]
        img[portal] = hu["portal"]
        img[hv] = hu["hv"]
        img[aorta] = hu["aorta"]
        img[ivc] = hu["ivc"]
        liver_hu = hu["liver"]
        # tumour intensity inside its mask, blended with a phase-dependent boundary blur
        if phase == "AP":
            tum = liver_hu + contrast * float(params["ap_enhancement"]) * float(params["ap_timing"]) \
                + het * 28.0 * tex
            tum = np.where(necrosis, 30.0, tum)
            if rim is not None:
                tum = np.where(rim & ~necrosis, tum + 25.0 * contrast, tum)
            blur = 2.2 + 2.5 * irr
        else:
            tum = liver_hu - float(params["pp_washout_hu"]) + het * 20.0 * tex
            tum = np.where(necrosis, 35.0, tum)
            blur = 1.0 + 0.8 * irr
        sub = img[box]
        m = gaussian_filter(tum_b.astype(np.float32), sig_vox(blur), mode="constant")
        sub = sub * (1 - m) + tum * m
        if phase == "AP":
            sub = np.where(arteries, hu["aorta"] * 0.8, sub)
            if params["peritumoral"]:
                pm = gaussian_filter(peri.astype(np.float32), sig_vox(3.0), mode="constant")
                sub = sub + pm * np.float32(rng.uniform(22, 38) * contrast)
        elif capsule is not None:
            cm = gaussian_filter(capsule.astype(np.float32), sig_vox(0.8), mode="constant")
            sub = sub + cm * np.float32(rng.uniform(25, 40))
        img[box] = sub
        # scanner: kernel blur (and slice profile along z), correlated noise
        img = gaussian_filter(img, (0.4, acq["psf"] / sp[1], acq["psf"] / sp[0]))
        noise = _smooth_noise(rng, shape, (0.3, 0.7, 0.7), acq["noise"])
        img = np.where(base > -900, img + noise, img + 0.2 * noise)
        if acq.get("hu_offset"):  # a scanner whose HU calibration is off
            img = img + np.float32(acq["hu_offset"])
        out[phase] = np.clip(np.round(img), -1024, 3071).astype(np.int16)
    mask = tumour.astype(np.uint8)
    zs = np.flatnonzero(mask.any(axis=(1, 2)))
    geometry = {"origin": tuple(float(v) for v in origin), "spacing": tuple(float(v) for v in sp),
                "tumour_voxels": int(mask.sum()), "tumour_slices": int(len(zs)),
                "tumour_volume_ml": round(float(mask.sum() * np.prod(sp) / 1000.0), 2),
                "tumour_cx": round(float(tc[0]), 1), "tumour_cy": round(float(tc[1]), 1),
                "tumour_cz": round(float(tc[2]), 1)}
    return out["AP"], out["PP"], mask, geometry


def _to_image(arr, geometry):
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(geometry["spacing"])
    img.SetOrigin(geometry["origin"])
    img.SetDirection((1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    return img


def _write(arr, geometry, path: Path):
    import SimpleITK as sitk

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name[:-7]}.{os.getpid()}.tmp.nii.gz")
    sitk.WriteImage(_to_image(arr, geometry), str(tmp), useCompression=True)
    os.replace(tmp, path)


def patient_job(job):
    """Render one patient and write its images and masks under ``root``; returns (patient_id, geometry)."""
    pid, params, centre, seed, index, root = job
    ap, pp, mask, geo = render_patient(params, centre, seed, index)
    root = Path(root)
    _write(ap, geo, root / "images" / f"{pid}_AP.nii.gz")
    _write(pp, geo, root / "images" / f"{pid}_PP.nii.gz")
    _write(mask, geo, root / "masks" / f"{pid}_AP.nii.gz")
    _write(mask, geo, root / "masks" / f"{pid}_PP.nii.gz")
    return pid, geo
