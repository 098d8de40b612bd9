"""A run's files as a plain RunState: written, chained, read back (the graph included)."""

import json

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from l2c_explorer.errors import InputError
from l2c_explorer.files import write_csv
from l2c_explorer.model_io import read_model_file
from l2c_explorer.runfile import SUMMARY_FILE, SUMMARY_KEY, RunState, read_run, read_run_state, write_run
from l2c_explorer.similarity_model import load_similarity_model


def finished(folder, state) -> None:
    """A run folder as discovery writes it: assignments, run files, then the summary with the run's digest."""
    write_csv(folder / "assignments.csv", ["path", "cluster"],
              [(f"img{i}.png", int(label)) for i, label in enumerate(state.labels)])
    run_file = write_run(folder, state)
    (folder / SUMMARY_FILE).write_text(json.dumps({SUMMARY_KEY: read_model_file(run_file, kind="run")[2]}))


def test_a_run_state_comes_back_as_written(tmp_path):
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(6, 4)).astype(np.float32)
    graph = sp.csr_matrix(np.array([[0, 1, 0, 0, 0, 0], [1, 0, 1, 0, 0, 0], [0, 1, 0, 0, 0, 0],
                                    [0, 0, 0, 0, 1, 1], [0, 0, 0, 1, 0, 1], [0, 0, 0, 1, 1, 0]], dtype=float))
    config = {"n_clusters": 2, "n_images": 6, "n_neighbors": 2, "pair_scale": 10.0, "pair_bias": -5.0,
              "similarity_model": "omniglot"}
    state = RunState(embedding=emb, labels=np.repeat([0, 1], 3), confidence=np.full(6, 0.9, np.float32),
                     probabilities=np.full((6, 2), 0.5, np.float32), prototypes=emb[:2], config=config,
                     model=load_similarity_model("omniglot"), centres=torch.ones(2, 3), graph=graph,
                     features=rng.normal(size=(6, 3)).astype(np.float32))
    finished(tmp_path, state)
    back = read_run(tmp_path)
    assert np.array_equal(back.embedding, emb) and np.array_equal(back.labels, state.labels)
    assert (back.graph != graph).nnz == 0 and back.graph.shape == (6, 6)
    np.testing.assert_allclose(back.features, state.features)
    assert back.paths == [f"img{i}.png" for i in range(6)] and back.answers == []
    assert back.config["n_clusters"] == 2 and back.config["embedding_model_sha256"]
    assert (read_run_state(tmp_path)["graph"] != graph).nnz == 0
    (tmp_path / SUMMARY_FILE).write_text("{}")  # a summary that is not this run's: no finished run
    with pytest.raises(InputError, match="not a finished run"):
        read_run(tmp_path)
