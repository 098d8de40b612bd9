"""The similarity model (SPN) once trained: P(two images show the same category), its file, finding it by name.

* :class:`SimilarityModel` is a trained model: network + preprocessing + model card. It embeds images and
  scores all pairs of a set with one matrix product. Load one with :func:`load_similarity_model` (a path
  or the name of a shipped model).
* :func:`inference_copy`, :func:`adapted_copy` and :func:`norm_statistics_copy`: copies of its network to
  embed with (batch norm folded away, or its statistics re-estimated on a new set of images).

Because the pair head is ``sigmoid(scale * cos + bias)`` of two embeddings, the whole pair matrix costs one
``b x d`` by ``d x b`` product on top of embedding each image once. Trained by
:class:`~l2c_explorer.similarity_learner.SimilarityLearner`.
"""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import Iterable
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .data import ImageSet, Preprocessing, as_image_set, normalise, to_unit
from .device import place, resolve_device
from .errors import InputError, ModelFileError, StoppedError
from .model_io import MODEL_SUFFIX, model_file_path, read_model_file, save_model_file
from .nets import SimilarityNet, build_similarity_net, has_frozen_trunk, package_supplied
from .pretrained import compute_trunk_features

# ---------------------------------------------------------------------------------------------------
# the trained model


class SimilarityModel:
    """A trained pairwise similarity model and everything needed to use it.

    Parameters
    ----------
    net : SimilarityNet
    preprocessing : Preprocessing
    card : dict
        The model card: architecture, training data summary, hold-out pair metrics, version, ...
    """

    def __init__(self, net: SimilarityNet, preprocessing: Preprocessing, card: dict):
        self.net = net.eval()
        self.preprocessing = preprocessing
        self.card = card
        self.digest: str | None = None
        self.source: str | None = None  # where it was loaded from

    # -- identity ---------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.card.get("name") or (Path(self.source).stem if self.source else "unsaved model")

    def __repr__(self) -> str:
        p = self.preprocessing
        return f"SimilarityModel({self.name!r}, input={p.channels}x{p.size}x{p.size})"

    # -- images -> embeddings -> pair probabilities ------------------------------------------------

    def prepare(self, images, **folder_kwargs) -> ImageSet:
        """Read a folder (or arrays) at this model's input size and channel count."""
        p = self.preprocessing
        return as_image_set(images, size=p.size, channels=p.channels, **folder_kwargs)

    def inputs(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 pixels (n, C, S, S) -> normalised float input."""
        return normalise(to_unit(pixels, self.preprocessing.invert), self.preprocessing)

    def embed(self, pixels: torch.Tensor, **options) -> torch.Tensor:
        """Unit embeddings of shape (n, d) for uint8 images of shape (n, C, S, S) (options: :meth:`embed_inputs`)."""
        return self.embed_inputs(self.inputs(pixels), **options)

    @torch.no_grad()
    def embed_inputs(
        self,
        inputs: torch.Tensor,
        *,
        device: str | torch.device = "auto",
        adapt_norm: bool = True,
        batch_size: int = 512,
        progress=None,
        should_stop=None,
    ) -> torch.Tensor:
        """Unit embeddings (n, d), on the CPU, of normalised model inputs (n, C, S, S).

        With ``adapt_norm`` the batch-norm statistics are re-estimated on these very images first (in a
        copy of the network, see :func:`adapted_copy`), so a new set of categories is normalised by its
        own statistics: the authors' "SPN in train mode" trick, done once for the whole set instead of
        per mini-batch. ``progress(done, total)`` is called after each batch; when ``should_stop()``
        becomes true, :class:`~l2c_explorer.errors.StoppedError` is raised.
        """
        dev = resolve_device(device)
        if progress is not None:  # this stage has begun (the batch-norm pass below reports nothing)
            progress(0, len(inputs))
        if has_frozen_trunk(self.net):  # nothing to adapt: the trunk's features in small batches, then the top
            features = compute_trunk_features(self, lambda a, b: inputs[a:b], len(inputs), device=dev,
                                              progress=progress, should_stop=should_stop, normalised=True)
            return F.normalize(self.net.encoder.from_features(features), dim=1)
        net = inference_copy(adapted_copy(self.net, inputs, dev, batch_size) if adapt_norm else self.net, dev)
        out = []
        for i in range(0, len(inputs), batch_size):
            if should_stop is not None and should_stop():
                raise StoppedError("Stopped while computing features; nothing was learnt.")
            batch = inputs[i : i + batch_size].to(dev)
            emb = net.embed(batch)
            if self.preprocessing.mirror_average:
                emb = F.normalize(emb + net.embed(batch.flip(-1)), dim=1)
            out.append(emb.cpu())
            if progress is not None:
                progress(min(i + batch_size, len(inputs)), len(inputs))
        return torch.cat(out)

    @torch.no_grad()
    def pair_probabilities(self, emb_a: torch.Tensor, emb_b: torch.Tensor | None = None) -> torch.Tensor:
        """P(same category) for every pair, on the CPU: unit embeddings (n, d), (m, d) -> (n, m)."""
        head = self.net.head
        where = head.scale.device
        emb_b = emb_a if emb_b is None else emb_b
        return torch.sigmoid(head(emb_a.to(where), emb_b.to(where))).float().cpu()

    # -- files ------------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> Path:
        """Write the model (weights, architecture, preprocessing, card) to one ``.safetensors`` file."""
        path = model_file_path(path)
        config = {
            "architecture": self.card["architecture"],
            "preprocessing": self.preprocessing.to_dict(),
            "card": self.card,
        }
        state = self.net.state_dict()
        # a pretrained trunk's weights come from their package, checked by sha256 (all but a tuned tail)
        state = {k: v for k, v in state.items() if not package_supplied(self.net, k)}
        saved = save_model_file(path, state, kind="similarity", config=config)
        self.source = str(saved)
        return saved

    @classmethod
    def load(cls, path: str | os.PathLike) -> SimilarityModel:
        """Read a model file written by :meth:`save`; foreign or altered files are refused."""
        tensors, config, digest = read_model_file(path, kind="similarity")
        try:
            from .nets import check_net_size

            check_net_size(config["architecture"])  # before anything is allocated
            net = build_similarity_net(config["architecture"])
            load_stored_weights(net, tensors)
            prep = Preprocessing.from_dict(config["preprocessing"])
        except (KeyError, ValueError, TypeError, RuntimeError) as exc:
            raise ModelFileError(f"{Path(path).name}: the stored model does not match its description ({exc}).") from None
        model = cls(net, prep, dict(config.get("card", {})))
        model.digest = digest
        model.source = str(path)
        return model


def load_stored_weights(net: SimilarityNet, tensors: dict[str, torch.Tensor]) -> None:
    """Load a model file's tensors: all of them, or all but a frozen trunk's (which its package supplies)."""
    if not has_frozen_trunk(net):
        net.load_state_dict(tensors, strict=True)
        return
    result = net.load_state_dict(tensors, strict=False)
    missing = [k for k in result.missing_keys if not package_supplied(net, k)]
    if missing or result.unexpected_keys:
        raise RuntimeError(f"missing {missing[:5]}, unexpected {list(result.unexpected_keys)[:5]}")


def norm_statistics_copy(net: nn.Module, batches: Iterable[torch.Tensor], device: torch.device) -> nn.Module:
    """A copy of ``net`` whose batch-norm statistics are the average over ``batches`` of model inputs.

    The one place batch-norm statistics are re-estimated. Not ``torch.optim.swa_utils.update_bn``: that
    runs the whole forward pass (here: every pair of a batch), includes a last batch of one image, and
    restores the old momentum, so statistics kept updating later would no longer be a plain average.
    """
    net = place(copy.deepcopy(net), device)
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules()):
        return net.eval()  # nothing to re-estimate (a folded pretrained trunk and its top): no pass over the images
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the batches below
    net.train()
    with torch.no_grad():
        for chunk in batches:
            if len(chunk) > 1:
                net.embed(chunk.to(device)) if hasattr(net, "embed") else net(chunk.to(device))
    return net.eval()


def inference_copy(net: nn.Module, device: torch.device) -> nn.Module:
    """A copy of ``net`` in eval mode for computing embeddings only, on ``device``.

    Each batch norm is folded into the convolution before it (``torch.fx``): the same function to float32
    rounding, one pass less over every activation. With :func:`~l2c_explorer.device.place`'s layout the
    embedding pass of both shipped models ran about 1.9x faster on a 2-core CPU (``benchmarks/conv_layout.py``).
    Never trained or saved: its batch norms are gone.
    """
    from torch.fx.experimental.optimization import fuse

    fast = copy.deepcopy(net).eval()
    with contextlib.suppress(Exception):  # torch.fx cannot trace every torchvision model; unfused is only slower
        fast.encoder = fuse(fast.encoder, inplace=True)
    return place(fast, device)


def adapted_copy(net: nn.Module, inputs: torch.Tensor, device: torch.device, batch_size: int = 512) -> nn.Module:
    """A copy of ``net`` whose batch-norm statistics are the average over ``inputs`` (n, C, S, S)."""
    return norm_statistics_copy(net, (inputs[i : i + batch_size] for i in range(0, len(inputs), batch_size)), device)


# ---------------------------------------------------------------------------------------------------
# finding models by name


def default_models_dirs() -> list[Path]:
    """Where shipped and user models are looked up by name, in order.

    ``$L2C_MODELS_DIR`` (a ``os.pathsep``-separated list), then the ``models/`` folder of the source checkout,
    then models bundled inside the installed package.
    """
    dirs: list[Path] = []
    env = os.environ.get("L2C_MODELS_DIR")
    if env:
        dirs += [Path(p) for p in env.split(os.pathsep) if p]
    here = Path(__file__).resolve().parent
    dirs += [here.parent / "models", here / "_models"]
    return [d for d in dirs if d.is_dir()]


def list_models(dirs: list[Path] | None = None) -> dict[str, Path]:
    """Model name -> file, for every similarity model file found in ``dirs`` (first one wins)."""
    found: dict[str, Path] = {}
    for d in dirs if dirs is not None else default_models_dirs():
        for f in sorted(Path(d).glob(f"*{MODEL_SUFFIX}")):
            found.setdefault(f.name[: -len(MODEL_SUFFIX)], f)
    return found


def resolve_model_path(name_or_path: str | os.PathLike, dirs: list[Path] | None = None) -> Path:
    """A file path as given, or the file of a model found by name (see :func:`default_models_dirs`)."""
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.is_file():
        return path
    if path.with_name(path.name + MODEL_SUFFIX).is_file():  # saved as "name" -> "name.safetensors"
        return path.with_name(path.name + MODEL_SUFFIX)
    if path.suffix == "" and os.sep not in text and "/" not in text:
        models = list_models(dirs)
        if text in models:
            return models[text]
        known = ", ".join(sorted(models)) or "none"
        raise ModelFileError(f"No model named {text!r} (models available: {known}); give a file path or a model name.")
    raise ModelFileError(f"Model file not found: {path}")


def store_discovery_settings(path: str | os.PathLike, settings: dict) -> Path:
    """Write discovery settings into a model file's card (``"discovery"``): the model then carries its own
    (see :data:`l2c_explorer.options.MODEL_SETTINGS`). ``settings`` may also hold a ``"chosen_by"`` note.

    The file is rewritten (atomically), so its sha256 changes.
    """
    from .options import MODEL_SETTINGS

    unknown = set(settings) - set(MODEL_SETTINGS) - {"chosen_by"}
    if unknown:
        raise InputError(f"Not discovery settings: {', '.join(sorted(unknown))}; known: {', '.join(MODEL_SETTINGS)}.")
    model = SimilarityModel.load(path)
    model.card["discovery"] = dict(settings)
    return model.save(path)


def model_fit_advice(model: SimilarityModel, image_files, dirs: list[Path] | None = None) -> tuple[str | None, str]:
    """Whether ``model`` suits these image files; if not, which available model does, and a message.

    Returns ``(better_model_name or None, message)``; ``(None, "")`` when the model fits (see
    :mod:`l2c_explorer.model_fit`).
    """
    from .model_fit import advice, model_statistics, sample_statistics

    folder_stats = sample_statistics(image_files)
    others = {}
    for name, path in list_models(dirs).items():
        if name == model.name:
            continue
        try:
            other = SimilarityModel.load(path)
        except ModelFileError:  # an unusable file is reported where models are listed, not here
            continue
        others[name] = model_statistics(other.card, other.preprocessing.to_dict())
    return advice(model.name, model_statistics(model.card, model.preprocessing.to_dict()), folder_stats, others)


def load_similarity_model(name_or_path: str | os.PathLike | SimilarityModel = "omniglot") -> SimilarityModel:
    """Load a similarity model from a file path or by name (e.g. ``"omniglot"``)."""
    if isinstance(name_or_path, SimilarityModel):
        return name_or_path
    return SimilarityModel.load(resolve_model_path(name_or_path))
