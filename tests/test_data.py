"""Reading folders: every image kind, every kind of bad input, and the folder is never modified."""

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from folder_snapshot import tree_snapshot
from l2c_explorer.data import (
    class_of,
    find_images,
    fit_square,
    images_from_arrays,
    light_background,
    load_image_folder,
    model_input,
    Preprocessing,
    read_image,
    truth_problem,
)
from l2c_explorer.errors import InputError


@pytest.fixture
def zoo(tmp_path, demo_keble):
    """One real Omniglot drawing saved in every supported format and mode, plus broken files."""
    real = Image.open(next((demo_keble / "character01").glob("*.png"))).convert("L")
    d = tmp_path / "zoo"
    (d / "sub" / "deeper").mkdir(parents=True)
    real.save(d / "gray.png")
    real.convert("RGB").save(d / "rgb.jpg", quality=95)
    real.convert("RGB").save(d / "sub" / "rgb.bmp")
    rgba = real.convert("RGBA")
    rgba.putalpha(Image.eval(real, lambda v: 255 - v))  # transparent paper, opaque ink
    rgba.save(d / "sub" / "rgba.png")
    real.convert("P").save(d / "palette.gif")
    real.convert("RGB").save(d / "sub" / "deeper" / "photo.webp")
    Image.fromarray((np.asarray(real, dtype=np.uint16) * 257)).save(d / "sixteen.tiff")
    real.resize((300, 120)).save(d / "wide.png")  # not square, any size
    # bad files
    (d / "empty.png").write_bytes(b"")
    (d / "notes.txt").write_text("not an image")
    (d / "fake.jpg").write_text("this is text with an image extension")
    good = (d / "gray.png").read_bytes()
    (d / "truncated.png").write_bytes(good[: len(good) // 2])
    (d / ".hidden.png").write_bytes(good)
    return d


def test_every_kind_of_image_is_read_and_bad_files_are_listed(zoo):
    before = tree_snapshot(zoo)
    images = load_image_folder(zoo, size=32, channels=1)
    assert sorted(images.paths) == sorted(
        ["gray.png", "rgb.jpg", "palette.gif", "sixteen.tiff", "wide.png", "sub/rgb.bmp", "sub/rgba.png",
         "sub/deeper/photo.webp"]
    )
    assert images.pixels.shape == (8, 1, 32, 32) and images.pixels.dtype == torch.uint8
    skipped = dict(images.skipped)
    assert set(skipped) == {"empty.png", "notes.txt", "fake.jpg", "truncated.png"}
    assert all(reason for reason in skipped.values())
    assert "not an image" in skipped["fake.jpg"] or "cannot" in skipped["fake.jpg"]
    assert tree_snapshot(zoo) == before  # only read


def test_modes_agree_on_the_same_drawing(zoo):
    images = load_image_folder(zoo, size=32, channels=1)
    by_name = dict(zip(images.paths, images.pixels.float()))
    reference = by_name["gray.png"]
    for name in ["sub/rgb.bmp", "palette.gif", "sixteen.tiff", "sub/rgba.png"]:
        assert (by_name[name] - reference).abs().mean() < 3.0, name


def test_rgb_output_has_three_channels(zoo):
    images = load_image_folder(zoo, size=16, channels=3)
    assert images.pixels.shape[1:] == (3, 16, 16)


@pytest.mark.parametrize("make", ["missing", "file", "empty", "only_bad"])
def test_unusable_folders_raise_clear_errors(tmp_path, make):
    target = tmp_path / "target"
    if make == "file":
        target.write_text("x")
    elif make == "empty":
        target.mkdir()
    elif make == "only_bad":
        target.mkdir()
        (target / "a.png").write_bytes(b"garbage")
    with pytest.raises(InputError) as err:
        load_image_folder(target, size=32, channels=1)
    assert str(target) in str(err.value)


def test_labels_come_from_first_level_folders(keble_subset):
    images = load_image_folder(keble_subset, size=32, channels=1, labelled=True)
    assert len(images.class_names) == 6 and len(images) == 120
    assert images.label_ids().tolist() == sorted(images.label_ids().tolist())
    assert class_of("a/b/c.png", depth=2) == "a/b" and class_of("c.png") == "."


def test_folder_names_that_cannot_be_true_categories_are_said_so_in_plain_words():
    assert truth_problem(["a", "a", "b"]) is None
    # images directly in the folder name no category; one category scores any single group as perfect
    assert truth_problem([".", ".", "."]) == ("3 images sit directly in the folder, not in a sub-folder named "
                                              "after their category")
    assert truth_problem(["a", ".", "b"]).startswith("1 image sits directly in the folder")
    assert truth_problem(["a", "a"]) == truth_problem([]) == "the sub-folders do not name at least two categories"


def test_fit_square_keeps_aspect_and_pads_with_border_colour():
    arr = np.full((10, 40, 1), 255, dtype=np.uint8)
    arr[:, 10:30] = 0
    out = fit_square(arr, 20)
    assert out.shape == (20, 20, 1)
    assert out[0, 0, 0] == 255 and out[10, 10, 0] == 0


def test_light_background_detection_and_inversion(demo_keble):
    images = load_image_folder(demo_keble / "character01", size=32, channels=1)
    assert light_background(images.pixels)
    x = model_input(images.pixels, Preprocessing(size=32, channels=1, invert=True, mean=(0.0,), std=(1.0,)))
    assert x[:, :, 0, :].mean() < 0.05  # paper is ~0 after inversion


def test_arrays_are_accepted():
    batch = np.random.default_rng(0).random((5, 28, 28))
    images = images_from_arrays(batch, size=32, channels=1, labels=[0, 1, 0, 1, 1])
    assert images.pixels.shape == (5, 1, 32, 32) and images.labels == ["0", "1", "0", "1", "1"]


def test_read_image_reports_reason(tmp_path):
    bad = tmp_path / "x.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 20)
    from l2c_explorer.data import ImageReadError

    with pytest.raises(ImageReadError):
        read_image(bad, size=32, channels=1)


def test_find_images_ignores_hidden_and_lists_others(zoo):
    files, ignored = find_images(zoo)
    names = {f.name for f in files}
    assert ".hidden.png" not in names and "notes.txt" in dict(ignored)


def test_images_too_large_to_be_safe_are_refused_call_by_call(tmp_path, monkeypatch):
    import warnings

    from l2c_explorer.data import ImageReadError

    Image.new("L", (60, 50), 255).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 3,000 pixels: over the limit, under twice it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow's own warning; the refusal must not depend on it
        with pytest.raises(ImageReadError, match="too large"):
            read_image(tmp_path / "big.png", size=32, channels=1)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    assert read_image(tmp_path / "big.png", size=32, channels=1).shape == (1, 32, 32)


def test_linked_class_folders_are_read_once_and_a_link_loop_ends(tmp_path):
    real = tmp_path / "real"
    for name in ("a", "b"):
        (real / name).mkdir(parents=True)
        Image.new("L", (8, 8), 255).save(real / name / "x.png")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a").symlink_to(real / "a", target_is_directory=True)
    (folder / "b").symlink_to(real / "b", target_is_directory=True)
    (folder / "a" / "loop").symlink_to(folder, target_is_directory=True)  # a link back up
    (folder / "b_again").symlink_to(real / "b", target_is_directory=True)
    images, _ = find_images(folder, follow_links=True)  # the links lead outside the folder: followed when asked
    assert [p.relative_to(folder).as_posix() for p in images] == ["a/x.png", "b/x.png"]


@pytest.fixture
def linked_folder(tmp_path, demo_keble):
    """Real drawings: ``folder`` holds one image, a link to it, a link back up (a cycle), and links to an image
    and to a folder outside it."""
    drawings = sorted((demo_keble / "character01").glob("*.png"))[:3]
    outside = tmp_path / "elsewhere"
    (outside / "class").mkdir(parents=True)
    shutil.copy(drawings[0], outside / "lone.png")
    shutil.copy(drawings[1], outside / "class" / "x.png")
    folder = tmp_path / "folder"
    (folder / "inside").mkdir(parents=True)
    shutil.copy(drawings[2], folder / "inside" / "real.png")
    (folder / "in_link.png").symlink_to(folder / "inside" / "real.png")
    (folder / "inside" / "loop").symlink_to(folder, target_is_directory=True)
    (folder / "out.png").symlink_to(outside / "lone.png")
    (folder / "out_dir").symlink_to(outside / "class", target_is_directory=True)
    return folder


def test_links_that_leave_the_folder_are_skipped_and_listed_unless_asked(linked_folder):
    from l2c_explorer.data import OUTSIDE_LINK

    images, ignored = find_images(linked_folder)
    assert [p.relative_to(linked_folder).as_posix() for p in images] == ["in_link.png", "inside/real.png"]
    assert ignored == [("out_dir", OUTSIDE_LINK), ("out.png", OUTSIDE_LINK)]
    assert "outside the chosen folder" in OUTSIDE_LINK and "--follow-links" in OUTSIDE_LINK
    images, ignored = find_images(linked_folder, follow_links=True)
    assert [p.relative_to(linked_folder).as_posix() for p in images] == [
        "in_link.png", "inside/real.png", "out.png", "out_dir/x.png"]
    assert ignored == []
    data = load_image_folder(linked_folder, size=32, channels=1)
    assert data.paths == ["in_link.png", "inside/real.png"] and len(data.skipped) == 2
    data = load_image_folder(linked_folder, size=32, channels=1, follow_links=True)
    assert len(data) == 4 and data.skipped == []


@pytest.mark.slow
def test_a_giant_16_bit_image_is_decoded_within_the_memory_budget(tmp_path):
    """A 9400 x 9400 16-bit PNG (small on disk, 177 MB decoded) read for a model and for a thumbnail: the
    decoding process grows by less than 300 MB (before: each float64 copy alone was 707 MB)."""
    import subprocess
    import sys

    pixels = np.full((9400, 9400), 52000, dtype=np.uint16)
    pixels[2000:4000, 1000:8000] = 3000
    Image.fromarray(pixels).save(tmp_path / "giant.png", compress_level=1)
    del pixels
    code = ("import resource, sys; from l2c_explorer.data import read_image; "
            "from l2c_explorer.thumbnails import make_thumbnail; "
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; "
            "arr = read_image(sys.argv[1], size=32, channels=1); thumb = make_thumbnail(sys.argv[1], 128); "
            "grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before; "
            "print(grown // 1024, arr.shape, arr.min(), arr.max(), thumb.size)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "giant.png")], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    grown_mb, *rest = out.stdout.split(maxsplit=1)
    assert int(grown_mb) < 300, out.stdout
    assert "(1, 32, 32)" in rest[0] and "(128, 128)" in rest[0], out.stdout  # a dark bar on a light page
