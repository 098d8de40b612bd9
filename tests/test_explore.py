"""Maps, cluster summaries and the map payload."""

from __future__ import annotations

import json

import numpy as np
import pytest

from l2c_explorer.explore import (
    GROUP_COLOURS,
    cluster_summaries,
    map_2d,
    map_payload,
    pca_2d,
    selection_counts,
    umap_2d,
)

pytestmark = pytest.mark.numerical  # .ci/run runs these again on one thread


def blobs(n_per=30, k=3, d=16, seed=0):
    """k well separated groups of unit vectors, and their labels."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * 5
    x = np.concatenate([c + rng.normal(scale=0.3, size=(n_per, d)) for c in centres])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), np.repeat(np.arange(k), n_per)


def separation(coords, labels):
    """Mean distance between group centres over mean spread inside groups (large = well separated)."""
    centres = np.stack([coords[labels == c].mean(0) for c in np.unique(labels)])
    inside = np.mean([np.linalg.norm(coords[labels == c] - centres[i], axis=1).mean()
                      for i, c in enumerate(np.unique(labels))])
    between = np.mean([np.linalg.norm(a - b) for i, a in enumerate(centres) for b in centres[i + 1:]])
    return between / inside


def test_pca_separates_groups_and_is_deterministic():
    x, y = blobs()
    a, b = pca_2d(x), pca_2d(x.copy())
    assert a.shape == (90, 2) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert separation(a, y) > 3


def test_pca_degenerate_inputs():
    assert pca_2d(np.zeros((0, 4))).shape == (0, 2)
    assert pca_2d(np.ones((1, 4))).shape == (1, 2)
    np.testing.assert_array_equal(pca_2d(np.ones((5, 4))), np.zeros((5, 2)))
    assert pca_2d(np.random.default_rng(0).normal(size=(5, 1))).shape == (5, 2)


@pytest.mark.slow
def test_umap_separates_groups_and_is_cached(tmp_path):
    x, y = blobs()
    coords = map_2d(x, method="umap", cache_dir=tmp_path)
    assert coords.shape == (90, 2) and np.isfinite(coords).all()
    assert separation(coords, y) > 3
    files = list(tmp_path.glob("map-*.npy"))
    assert len(files) == 1
    # the cached map is returned as is (a tampered cache file proves it is read, not recomputed)
    np.save(files[0], np.full((90, 2), 7.0, dtype=np.float32))
    np.testing.assert_array_equal(map_2d(x, method="umap", cache_dir=tmp_path), np.full((90, 2), 7.0))
    # other options, another file
    map_2d(x, method="pca", cache_dir=tmp_path)
    assert len(list(tmp_path.glob("map-*.npy"))) == 2


def test_umap_small_inputs_fall_back_to_pca():
    x = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    np.testing.assert_array_equal(umap_2d(x), pca_2d(x))


def test_damaged_cache_is_recomputed(tmp_path):
    x, _ = blobs(n_per=5)
    first = map_2d(x, method="pca", cache_dir=tmp_path)
    cached = next(tmp_path.glob("map-*.npy"))
    cached.write_bytes(b"garbage")
    np.testing.assert_array_equal(map_2d(x, method="pca", cache_dir=tmp_path), first)
    with pytest.raises(ValueError):
        map_2d(x, method="tsne")


def test_cluster_summaries_sizes_exemplars_and_purity():
    x, y = blobs(n_per=20, k=3)
    conf = np.linspace(0.2, 1.0, len(y))
    truth = np.where(np.arange(len(y)) % 10 == 0, "odd", np.array(["a", "b", "c"])[y])
    labels = y.copy()
    labels[:25] = 0  # cluster 0 is now the biggest (25 images), cluster 1 has 15
    out = cluster_summaries(x, labels, conf, truth=truth, n_typical=4, n_uncertain=3)
    assert [s.cluster for s in out] == [0, 2, 1] and [s.size for s in out] == [25, 20, 15]
    for s in out:
        members = np.flatnonzero(labels == s.cluster)
        assert set(s.typical) <= set(members) and set(s.uncertain) <= set(members)
        assert len(s.typical) == 4 and len(s.uncertain) == 3
        # least certain = lowest confidence, in increasing order
        assert s.uncertain == members[np.argsort(conf[members])][:3].tolist()
        assert s.mean_confidence == pytest.approx(conf[members].mean(), abs=1e-4)
    s2 = next(s for s in out if s.cluster == 2)
    assert s2.top_label == "c" and s2.purity == pytest.approx(18 / 20)
    # typical images are the closest to the cluster's mean direction
    members = np.flatnonzero(labels == 2)
    centre = x[members].mean(0)
    best = members[np.argmax(x[members] @ centre)]
    assert s2.typical[0] == best
    assert cluster_summaries(x, labels, conf)[0].top_label is None


def test_selection_counts():
    labels = np.array([0, 0, 1, 2, 2, 2])
    assert selection_counts(labels, [0, 3, 4, 5, 2]) == [(2, 3), (0, 1), (1, 1)]
    assert selection_counts(labels, []) == []


def test_map_payload_is_compact_and_consistent():
    rng = np.random.default_rng(0)
    n = 20_000
    coords = rng.normal(size=(n, 2)) * 100
    labels = rng.integers(0, 30, size=n)
    conf = rng.random(n)
    paths = [f"class{i % 7}/img_{i:05d}.png" for i in range(n)]
    thumbs = [f"{i:020x}" for i in range(n)]
    truth = [f"class{i % 7}" for i in range(n)]
    payload = map_payload(coords, labels, conf, paths=paths, thumbs=thumbs, truth=truth)
    text = json.dumps(payload, separators=(",", ":"))
    assert len(text) < 2_500_000  # ~1 MB of JSON for 20,000 images
    assert payload["n"] == n and len(payload["x"]) == n and len(payload["names"]) == 30
    assert min(payload["x"]) == -1 and max(payload["x"]) == 1
    assert payload["truth_names"] == sorted(set(truth))
    assert payload["truth_names"][payload["truth"][8]] == "class1"
    with pytest.raises(ValueError):
        map_payload(coords[:5], labels, conf, paths=paths, thumbs=thumbs)
    empty = map_payload(np.zeros((0, 2)), np.zeros(0, int), np.zeros(0), paths=[], thumbs=[])
    assert empty["n"] == 0 and empty["x"] == []
    assert payload["colours"] == list(GROUP_COLOURS)  # the page draws with these


def srgb_to_lab(hex_colours: list[str]) -> np.ndarray:
    """CIELAB (D65) of ``#rrggbb`` colours, shape (n, 3)."""
    rgb = np.array([[int(h[i:i + 2], 16) / 255 for i in (1, 3, 5)] for h in hex_colours])
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    to_xyz = np.array([[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750],
                       [0.0193339, 0.1191920, 0.9503041]])
    xyz = linear @ to_xyz.T / np.array([0.95047, 1.0, 1.08883])
    eps = (6 / 29) ** 3
    f = np.where(xyz > eps, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], axis=1)


def test_group_colours_are_all_clearly_different():
    """The first 40 groups (the map's legend) each get a colour of their own, all pairs clearly apart."""
    colours = list(GROUP_COLOURS)
    assert len(colours) >= 40
    assert all(len(c) == 7 and c[0] == "#" and int(c[1:], 16) >= 0 for c in colours)
    lab = srgb_to_lab(colours[:40])
    delta_e = np.linalg.norm(lab[:, None] - lab[None], axis=-1)  # CIE76
    np.fill_diagonal(delta_e, np.inf)
    a, b = np.unravel_index(np.argmin(delta_e), delta_e.shape)
    assert delta_e.min() > 20, (colours[a], colours[b], delta_e.min())
    # the old 10-colour cycle: 1 and 11 were both orange, 2 and 12 both green
    assert delta_e[1, 11] > 20 and delta_e[2, 12] > 20
    # visible on the map's white background, and not grey
    assert lab[:, 0].max() < 80 and np.hypot(lab[:, 1], lab[:, 2]).min() > 20
