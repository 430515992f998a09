"""The fluorojax command: outputs equal the library's, errors are clear, registration recovers a pose."""

import json

import numpy as np
import pytest
import tifffile

import fluorojax as fj
from fluorojax.cli import main


def example_drr(size, lao, cra, pixel_size):
    ct = fj.load_example()
    camera = fj.Camera(size, size, pixel_size, 1020.0)
    return np.asarray(fj.render(fj.hu_to_mu(ct), camera, fj.carm_pose(lao, cra, 510.0, ct.center)))


def test_render_writes_the_library_image(tmp_path):
    out = tmp_path / "drr.npy"
    assert main(["render", "--size", "24", "24", "--carm", "20", "-5", "--out", str(out)]) == 0
    np.testing.assert_allclose(np.load(out), example_drr(24, 20.0, -5.0, 400.0 / 24), rtol=1e-5)
    tiff = tmp_path / "drr.tiff"
    assert main(["render", "--size", "24", "24", "--carm", "20", "-5", "--out", str(tiff)]) == 0
    np.testing.assert_array_equal(tifffile.imread(tiff), np.load(out))
    assert not list(tmp_path.glob("*.partial*"))


def test_render_polychromatic_with_noise_is_seeded(tmp_path):
    outs = [tmp_path / f"{i}.npy" for i in range(3)]
    for out, seed in zip(outs, (1, 1, 2)):
        assert (
            main(
                [
                    "render",
                    "--size",
                    "16",
                    "16",
                    "--kvp",
                    "90",
                    "--photons",
                    "500",
                    "--seed",
                    str(seed),
                    "--out",
                    str(out),
                ]
            )
            == 0
        )
    a, b, c = (np.load(o) for o in outs)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 0


@pytest.mark.parametrize(
    "argv, message",
    [
        (["render", "missing.nii.gz", "--out", "x.npy"], "no such NIfTI file"),
        (["render", "--size", "8", "8", "--out", "x.bmp"], "must end in"),
        (["render", "--size", "8", "8", "--photons", "100", "--out", "x.npy"], "--photons needs --kvp"),
        (["render", "--size", "8", "8", "--kvp", "77", "--out", "x.npy"], "77 kVp"),
        (["register", "missing.npy"], "no such image"),
    ],
)
def test_bad_arguments_exit_with_a_clear_message(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_register_recovers_the_pose_of_a_rendered_target(tmp_path):
    target = tmp_path / "target.npy"
    np.save(target, example_drr(32, 4.0, 3.0, 400.0 / 32))
    out, overlay = tmp_path / "pose.json", tmp_path / "overlay.png"
    argv = [
        "register",
        str(target),
        "--carm",
        "0",
        "0",
        "--steps",
        "60",
        "--scales",
        "2",
        "1",
        "--out",
        str(out),
        "--overlay",
        str(overlay),
    ]
    assert main(argv) == 0
    record = json.load(open(out))
    ct = fj.load_example()
    truth = np.asarray(fj.carm_pose(4.0, 3.0, 510.0, ct.center))
    pose = np.asarray(record["pose"])
    start = np.asarray(record["initial_pose"])
    angle = lambda a, b: float(fj.transforms.rotation_angle(a[:3, :3], b[:3, :3]))  # noqa: E731
    assert angle(pose, truth) < 0.25 * angle(start, truth)
    assert overlay.stat().st_size > 0


def test_register_animates_and_searches(tmp_path):
    # a DRR of the example as the target, registered from its own pose with the global search:
    # the pose JSON, the overlay and an animated GIF with one frame per step plus the final pose
    from PIL import Image

    import fluorojax as fj
    from fluorojax.cli import main

    ct = fj.load_example()
    camera = fj.Camera(32, 32, 300.0 / 32, 1020.0)
    pose = fj.carm_pose(0.0, 0.0, 510.0, ct.center)
    np.save(tmp_path / "target.npy", np.asarray(fj.render(fj.hu_to_mu(ct), camera, pose)))
    gif = tmp_path / "run.gif"
    main(
        [
            "register",
            str(tmp_path / "target.npy"),
            "--carm",
            "3",
            "0",
            "--steps",
            "2",
            "--scales",
            "2",
            "1",
            "--search",
            "--out",
            str(tmp_path / "pose.json"),
            "--overlay",
            str(tmp_path / "overlay.png"),
            "--animate",
            str(gif),
        ]
    )
    with Image.open(gif) as image:
        assert image.format == "GIF" and image.size == (32, 32)
        assert 2 <= image.n_frames <= 2 * 2 + 1
    record = json.loads((tmp_path / "pose.json").read_text())
    assert len(record["losses"]) == 2 * 2
    assert (tmp_path / "overlay.png").is_file()
