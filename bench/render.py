"""3-D reconstruction on a 512x512x300 chest CT: volume build, volume rendering, MPR, memory.

Data: ``consilium.synthetic`` (512x512, 0.7 mm pixels, 1.25 mm slices, int16 HU), built
once in memory and once from Part 10 files in a temporary folder. Everything runs in this one
process, the way a render worker would hold one volume:

* volume build time, from in-memory datasets and from files; RSS growth against the voxel
  array's size (target: about one copy of the voxels);
* the first full-quality 512x512 frame of a fresh renderer (CT bone, shaded: includes the
  gradient computation), then warm full-quality frames;
* rotation at adaptive (interactive) quality: frames rendered and JPEG-encoded while the azimuth
  turns 6 degrees per frame (target: 10 frames/s or more), for bone, soft tissue and MIP;
* one MPR frame (target: 30 ms or less) for axial, coronal, sagittal, oblique and 10 mm slabs
  with VTK, and the same planes with plain scipy ``map_coordinates`` in the same run;
* the VTK ray caster settings used.

    python bench/render.py [--slices 300] [--size 512] [--frames 60] [--mpr-repeats 20]
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_cpu, percentile, print_machine
from consilium.synthetic import (
    PatientSpec,
    StudySpec,
    generate_ct_series,
    write_ct_series,
)
from consilium_rendering import (
    ImageFormat,
    OrbitCamera,
    Orientation,
    Plane,
    Quality,
    RenderRequest,
    Reslicer,
    Slab,
    SlabMode,
    Volume,
    VolumeRenderer,
    apply_window,
    build_volume,
    encode_frame,
    extract_isosurface,
    mpr_planes,
    oblique_plane,
    stl_bytes,
)
from consilium_rendering.reslice import reslice_axes, slab_sampling
from consilium_rendering.reslice_reference import reslice_reference

MB = 1024 * 1024


def rss() -> int:
    """Resident set size of this process, bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def timed(function: Callable[[], object], repeats: int, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        function()
    out = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        out.append(time.perf_counter() - started)
    return out


def ms(values: list[float]) -> str:
    return (f"median {statistics.median(values) * 1000:7.1f} ms   "
            f"p95 {percentile(values, 95) * 1000:7.1f} ms   (n={len(values)})")


def bench_volume_rendering(volume: Volume, side: int, frames: int) -> None:
    print("\n## volume rendering (vtkFixedPointVolumeRayCastMapper, offscreen EGL)")
    before = rss()
    started = time.perf_counter()
    renderer = VolumeRenderer(volume)
    setup = time.perf_counter() - started
    size = (side, side)
    camera = OrbitCamera(azimuth=20.0, elevation=10.0, zoom=1.2)
    first = renderer.render(RenderRequest(preset="ct-bone", camera=camera, size=size))
    print(f"renderer set-up {setup * 1000:.0f} ms; first full-quality {size[0]}x{size[1]} frame "
          f"(bone, shaded, gradients computed): {first.seconds:.2f} s")
    print(f"RSS growth by renderer + gradients: {(rss() - before) / MB:.1f} MiB")
    warm = timed(lambda: renderer.render(RenderRequest(preset="ct-bone", camera=camera,
                                                       size=size)), 5, warmup=0)
    print(f"warm full-quality frame, bone:        {ms(warm)}")
    jpeg = encode_frame(first.pixels)
    encode = timed(lambda: encode_frame(first.pixels), 20)
    print(f"JPEG q85 of a {size[0]}x{size[1]} frame: {ms(encode)}  ({len(jpeg) / 1024:.0f} KiB)")

    for preset in ("ct-bone", "ct-soft-tissue", "ct-mip"):
        renderer.render(RenderRequest(preset=preset, camera=camera, size=size,
                                      quality=Quality.INTERACTIVE))
        times: list[float] = []
        pixels = 0
        for n in range(frames):
            request = RenderRequest(
                preset=preset, size=size, quality=Quality.INTERACTIVE,
                camera=OrbitCamera(azimuth=20.0 + 6.0 * n, elevation=10.0, zoom=1.2),
            )
            started = time.perf_counter()
            frame = renderer.render(request)
            encode_frame(frame.pixels)
            times.append(time.perf_counter() - started)
            pixels = frame.pixels.shape[0]
        fps = len(times) / sum(times)
        print(f"rotating, interactive ({pixels}x{pixels} rays, "
              f"{renderer.sample_distance(Quality.INTERACTIVE):g} mm steps) {preset:15} "
              f"{fps:5.1f} frames/s  {ms(times)}")
        sharp = RenderRequest(preset=preset, camera=camera, size=size)
        final = timed(partial(renderer.render, sharp), 3, warmup=0)
        print(f"  sharp frame after the drag ({size[0]}x{size[1]}): {ms(final)}")
    print("ray caster settings:", renderer.describe())
    renderer.close()


def bench_mpr(volume: Volume, repeats: int, reference_repeats: int) -> None:
    print("\n## MPR (vtkImageReslice, trilinear) vs scipy.ndimage.map_coordinates (order 1)")
    reslicer = Reslicer(volume)
    centre = volume.center
    planes = mpr_planes(volume, centre)
    oblique = oblique_plane(volume, centre, (0.35, -0.5, 0.8))
    viewport = Plane.centered(centre, oblique.x_axis, oblique.y_axis, oblique.spacing, (512, 512))
    reslice_reference(volume, replace(oblique, size=(4, 4)))  # imports scipy, outside timing
    cases = [
        ("axial", planes[Orientation.AXIAL], None),
        ("coronal", planes[Orientation.CORONAL], None),
        ("sagittal", planes[Orientation.SAGITTAL], None),
        ("oblique", oblique, None),
        ("oblique, 512x512 viewport", viewport, None),
        ("axial slab MIP 10 mm", planes[Orientation.AXIAL], Slab(10.0, SlabMode.MAX)),
        ("coronal slab MinIP 10 mm", planes[Orientation.CORONAL], Slab(10.0, SlabMode.MIN)),
        ("oblique slab MIP 10 mm", oblique, Slab(10.0, SlabMode.MAX)),
        ("oblique slab MIP, viewport", viewport, Slab(10.0, SlabMode.MAX)),
        ("  same, interactive (1/2)", viewport.coarser(2.0), Slab(10.0, SlabMode.MAX)),
        ("oblique slab mean 10 mm", oblique, Slab(10.0, SlabMode.MEAN)),
    ]
    for name, plane, slab in cases:
        vtk_times = timed(partial(reslicer.reslice, plane, slab), repeats)
        ref_times = timed(partial(reslice_reference, volume, plane, slab), reference_repeats,
                          warmup=0)
        image = reslicer.reslice(plane, slab)
        difference = float(np.abs(image - reslice_reference(volume, plane, slab)).max())
        print(f"{name:27} {plane.size[0]}x{plane.size[1]}  VTK {ms(vtk_times)}  |  scipy "
              f"median {statistics.median(ref_times) * 1000:7.1f} ms  (max |diff| "
              f"{difference:.3f} HU)")
    grey = apply_window(reslicer.reslice(planes[Orientation.AXIAL]), 40.0, 400.0)
    window_encode = timed(lambda: encode_frame(apply_window(
        reslicer.reslice(planes[Orientation.AXIAL]), 40.0, 400.0), ImageFormat.JPEG), 10)
    print(f"axial reslice + window + JPEG: {ms(window_encode)} "
          f"({len(encode_frame(grey)) / 1024:.0f} KiB)")


def bench_slab_breakdown(volume: Volume, repeats: int) -> None:
    """The oblique 10 mm MIP slab at 512x512, the frame the live consilium sends: integrated by
    VTK (samples evenly from face to face) or from sheets (a new plane, and paged one voxel
    step along the normal as the viewer pages it), its stages, the reslice's own threads, and
    what fewer samples along the normal would buy and cost.
    Wall and CPU time (this process, all threads) in interleaved repeats: CPU time says what a
    frame costs, whatever else the machine is doing."""
    print("\n## oblique 10 mm MIP slab, 512x512 viewport: where the time goes")
    centre = volume.center
    oblique = oblique_plane(volume, centre, (0.35, -0.5, 0.8))
    viewport = Plane.centered(centre, oblique.x_axis, oblique.y_axis, oblique.spacing, (512, 512))
    slab = Slab(10.0, SlabMode.MAX)
    count, step = slab_sampling(volume, viewport, slab)
    index_normal = volume.inverse_affine[:3, :3] @ np.asarray(viewport.normal)
    layer_step = 1.0 / float(np.abs(index_normal).max())  # one sample per voxel layer crossed
    coarse = Slab(10.0, SlabMode.MAX, step_mm=layer_step)
    reslicers = {threads: Reslicer(volume, threads=threads) for threads in (1, 2)}
    axes = reslice_axes(volume, viewport, step)
    background = volume.value_range[0]

    def evenly(threads: int) -> object:
        """The slab integrated by vtkImageReslice, samples evenly from face to face."""
        return reslicers[threads]._run(axes, viewport.size, count, background, SlabMode.MAX)

    coarse_count, coarse_step = slab_sampling(volume, viewport, coarse)

    def evenly_coarse() -> object:
        return reslicers[2]._run(reslice_axes(volume, viewport, coarse_step), viewport.size,
                                 coarse_count, background, SlabMode.MAX)

    def new_plane() -> object:
        """Sheets and faces, nothing kept (a plane just turned)."""
        reslicers[2]._sheets.clear()
        return reslicers[2].reslice(viewport, slab)

    pager = Reslicer(volume, threads=2)
    pages = iter(range(1_000_000))
    normal_step = np.asarray(viewport.normal) * step

    def paged() -> object:
        """One voxel step further along the normal than the call before (the viewer paging
        the slab): the two faces and the sheet that enters."""
        shifted = Plane(tuple(np.asarray(viewport.origin) + normal_step * next(pages)),
                        viewport.x_axis, viewport.y_axis, viewport.spacing, viewport.size)
        return pager.reslice(shifted, slab)

    cases: dict[str, Callable[[], object]] = {
        "evenly spaced (VTK's slab), 2 threads": partial(evenly, 2),
        "evenly spaced (VTK's slab), 1 thread": partial(evenly, 1),
        "sheets, a new plane, 2 threads": new_plane,
        "sheets, paged one step, 2 threads": paged,
        f"evenly, 2 threads, {slab_sampling(volume, viewport, coarse)[0]} samples "
        f"({layer_step:.2f} mm)": partial(evenly_coarse),
    }
    image = reslicers[2].reslice(viewport, slab)
    grey = apply_window(image, 300.0, 1500.0)
    cases["window (300/1500)"] = partial(apply_window, image, 300.0, 1500.0)
    cases["JPEG q85"] = partial(encode_frame, grey, ImageFormat.JPEG)
    wall: dict[str, list[float]] = {name: [] for name in cases}
    cpu: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, function in cases.items():
            started, started_cpu = time.perf_counter(), time.process_time()
            function()
            wall[name].append(time.perf_counter() - started)
            cpu[name].append(time.process_time() - started_cpu)
    print(f"{count} samples per pixel along the normal, {step:.3f} mm apart (one voxel step)")
    for name in cases:
        print(f"  {name:40} wall median {statistics.median(wall[name]) * 1000:6.1f} ms   "
              f"CPU median {statistics.median(cpu[name]) * 1000:6.1f} ms")
    truth = reslicers[2].reslice(viewport, Slab(10.0, SlabMode.MAX, step_mm=0.1))
    inside = truth > volume.value_range[0]
    candidates = (("voxel step, evenly", evenly(2)), ("voxel step, sheets", new_plane()),
                  (f"{layer_step:.2f} mm, evenly", evenly_coarse()))
    for name, image in candidates:
        error = (truth - np.asarray(image))[inside]
        print(f"  MIP at a {name} vs a 0.1 mm step: under by {float(error.mean()):.1f} HU on "
              f"average, p99 {percentile(list(error), 99):.0f} HU, max {float(error.max()):.0f} HU")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512, help="rows and columns")
    parser.add_argument("--frames", type=int, default=60, help="frames per rotation run")
    parser.add_argument("--mpr-repeats", type=int, default=20)
    parser.add_argument("--reference-repeats", type=int, default=3)
    parser.add_argument("--slab-only", action="store_true",
                        help="only the oblique slab's breakdown (volume built in memory)")
    args = parser.parse_args()

    print_machine("rendering: volume build, volume rendering, MPR")
    busy_start, wall_start = machine_cpu(), time.monotonic()
    study = StudySpec(PatientSpec("BENCH-3D", "Phantom^Render"), "20240301")

    # ---------------------------------------------------------------- volume build
    started = time.perf_counter()
    series = list(generate_ct_series(study, slices=args.slices, rows=args.size,
                                     columns=args.size, uid_seed="bench-render"))
    print(f"series generated in memory: {len(series)} slices {args.size}x{args.size} "
          f"in {time.perf_counter() - started:.1f} s (not part of any measurement)")
    gc.collect()
    before, peak_before = rss(), peak_rss()
    started = time.perf_counter()
    volume = build_volume(series)
    build_memory = time.perf_counter() - started
    gc.collect()
    grown = rss() - before
    print("\n## volume build")
    print(f"from in-memory datasets: {build_memory:.2f} s  shape {volume.shape} "
          f"{volume.voxels.dtype}  spacing {tuple(round(s, 3) for s in volume.spacing)}")
    print(f"voxel array: {volume.nbytes / MB:.1f} MiB; RSS growth by the build "
          f"{grown / MB:.1f} MiB ({grown / volume.nbytes:.2f} x the voxels); peak RSS growth "
          f"during the build {(max(peak_rss(), before) - max(peak_before, before)) / MB:.1f} MiB")
    del series
    gc.collect()
    if args.slab_only:
        bench_slab_breakdown(volume, args.mpr_repeats)
        return 0

    with tempfile.TemporaryDirectory(prefix="bench-render-") as folder:
        paths = write_ct_series(study, Path(folder), slices=args.slices, rows=args.size,
                                columns=args.size, uid_seed="bench-render")
        del volume
        gc.collect()
        before = rss()
        started = time.perf_counter()
        volume = build_volume(paths)
        build_files = time.perf_counter() - started
        gc.collect()
        grown = rss() - before
    print(f"from {len(paths)} Part 10 files: {build_files:.2f} s; RSS growth {grown / MB:.1f} "
          f"MiB ({grown / volume.nbytes:.2f} x the voxels: the cached volume)")

    bench_volume_rendering(volume, args.size, args.frames)
    bench_mpr(volume, args.mpr_repeats, args.reference_repeats)
    bench_slab_breakdown(volume, args.mpr_repeats)

    # ---------------------------------------------------------------- isosurface
    started = time.perf_counter()
    mesh = extract_isosurface(volume, 300.0, step=2)
    stl = stl_bytes(mesh)
    print(f"\nbone isosurface (300 HU, every 2nd voxel) + binary STL: "
          f"{time.perf_counter() - started:.2f} s, {len(mesh.triangles):,} triangles, "
          f"{len(stl) / MB:.0f} MiB")

    busy = (machine_cpu() - busy_start) / (time.monotonic() - wall_start)
    print(f"\nmachine busy over the run: {busy:.2f} of {os.cpu_count()} cores in use on average "
          f"(this process included); load average now "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
