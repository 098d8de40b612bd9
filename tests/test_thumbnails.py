"""The thumbnail cache: small files, keyed by path + mtime + size, never written next to the images."""

from __future__ import annotations

import os
import threading

import numpy as np
from PIL import Image

from folder_snapshot import tree_snapshot
from l2c_explorer.thumbnails import THUMBNAIL_SUFFIX, ThumbnailCache, make_thumbnail


def write_image(path, size=(300, 200), mode="RGB", value=128):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value if mode != "RGB" else (value, 30, 200)).save(path)
    return path


def test_thumbnail_is_small_webp_in_the_cache_only(tmp_path, keble_subset):
    before = tree_snapshot(keble_subset)
    cache = ThumbnailCache(tmp_path / "cache", size=64)
    image = next(keble_subset.rglob("*.png"))
    thumb = cache.get(image)
    assert thumb is not None and thumb.parent == tmp_path / "cache" and thumb.suffix == THUMBNAIL_SUFFIX
    with Image.open(thumb) as im:
        assert im.format == "WEBP" and max(im.size) <= 64
    assert thumb.stat().st_size < image.stat().st_size * 4 and thumb.stat().st_size < 10_000
    assert tree_snapshot(keble_subset) == before  # the image folder is never written to


def test_aspect_ratio_kept_and_odd_modes_handled(tmp_path):
    cache = ThumbnailCache(tmp_path / "cache", size=100)
    wide = write_image(tmp_path / "img" / "wide.png", size=(400, 100))
    gray16 = tmp_path / "img" / "g16.png"
    Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 10).astype(np.uint16)).save(gray16)
    rgba = tmp_path / "img" / "rgba.png"
    Image.new("RGBA", (50, 80), (255, 0, 0, 0)).save(rgba)
    binary = tmp_path / "img" / "bw.png"
    Image.new("1", (30, 30), 1).save(binary)
    with Image.open(cache.get(wide)) as im:
        assert im.size == (100, 25)
    for f in (gray16, rgba, binary):
        with Image.open(cache.get(f)) as im:
            assert im.mode in ("L", "RGB")
    with Image.open(cache.get(rgba)) as im:  # transparent pixels become white paper
        assert im.convert("RGB").getpixel((0, 0)) == (255, 255, 255)


def test_key_changes_when_the_file_changes(tmp_path):
    cache = ThumbnailCache(tmp_path / "cache")
    img = write_image(tmp_path / "a.png", value=10)
    k1 = cache.key(img)
    assert cache.key(img) == k1 and len(k1) == 20
    write_image(img, size=(301, 200), value=200)
    os.utime(img, ns=(img.stat().st_atime_ns, img.stat().st_mtime_ns + 10**9))
    assert cache.key(img) != k1
    assert ThumbnailCache(tmp_path / "cache", size=32).key(img) != cache.key(img)
    assert cache.key(tmp_path / "missing.png") is None


def test_cached_thumbnail_is_reused(tmp_path):
    cache = ThumbnailCache(tmp_path / "cache")
    img = write_image(tmp_path / "a.png")
    first = cache.get(img)
    mtime = first.stat().st_mtime_ns
    assert cache.get(img) == first and first.stat().st_mtime_ns == mtime


def test_bad_files_give_none(tmp_path):
    cache = ThumbnailCache(tmp_path / "cache")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    truncated = write_image(tmp_path / "t.png", size=(200, 200))
    truncated.write_bytes(truncated.read_bytes()[:60])
    assert cache.get(bad) is None and cache.get(truncated) is None
    assert cache.get(tmp_path / "missing.png") is None
    assert not list((tmp_path / "cache").glob("*.partial*"))  # no temporary file left behind


def test_get_many_in_order_with_failures_and_stop(tmp_path):
    cache = ThumbnailCache(tmp_path / "cache", size=32)
    files = [write_image(tmp_path / f"{i}.png", size=(40, 40), value=i * 20) for i in range(6)]
    (tmp_path / "bad.png").write_bytes(b"xx")
    seen = []
    out = cache.get_many([*files, tmp_path / "bad.png"], workers=2, progress=lambda d, t: seen.append((d, t)))
    assert [o is not None for o in out] == [True] * 6 + [False]
    assert out[3] == cache.file_of(cache.key(files[3]))
    assert seen[-1] == (7, 7)
    stop = threading.Event()
    stop.set()
    cache.clear()
    assert cache.get_many(files, stop=stop) == [None] * 6
    assert cache.clear() == 0


def test_make_thumbnail_never_upscales(tmp_path):
    small = write_image(tmp_path / "s.png", size=(16, 16))
    assert make_thumbnail(small, 128).size == (16, 16)
