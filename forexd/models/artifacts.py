"""Save and load trained models as single files, written atomically.

Format: one uncompressed zip holding ``meta.json`` (format version, backend, spec, classes,
feature names, fit info, caller metadata) and the payload: ``model.skops`` for
scikit-learn models, ``state_dict.pt`` for torch models, ``policy.pt`` for RL agents (a
tensor dict, see :mod:`forexd.models.rl_ppo`; never sb3's pickled zip).

Options weighed: pickle/joblib would load anything, including code an attacker placed in a
models directory; skops loads only types it is told to trust. We do not trust blindly: the
payload's untrusted types (``get_untrusted_types``) must all be on ``SKOPS_ALLOWED_TYPES``,
the few estimator internals our model kinds produce, or loading is refused. Torch weights
are a plain state dict loaded with ``weights_only=True`` into a network rebuilt from the
spec. A single file makes the write atomic (temp file, fsync, ``os.replace``, fsync of the
directory), and the zip's CRC-32 checks turn a truncated or corrupted file into an
:class:`ArtifactError` instead of a crash or a silently wrong model.
"""

from __future__ import annotations

import io
import json
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from forexd import __version__
from forexd.fsutil import write_atomic
from forexd.models.errors import ArtifactError, ModelError
from forexd.models.spec import ModelSpec
from forexd.models.trained import SklearnModel, TrainedModel

FORMAT = "forexd-model"
FORMAT_VERSION = 1
META_NAME = "meta.json"
SKOPS_NAME = "model.skops"
TORCH_NAME = "state_dict.pt"

SKOPS_ALLOWED_TYPES = frozenset(
    {
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.tree._tree.Tree",
    }
)
"""Types outside skops' default trust that our scikit-learn kinds contain.

Measured with scikit-learn 1.9 / skops 0.16 over every kind, binary and ternary labels,
with and without class weights and early stopping. If another version adds a type, loading
fails with a message naming it; review it before adding it here.
"""

ESTIMATOR_TYPES = {
    "logistic": "Pipeline",
    "hist_gradient_boosting": "HistGradientBoostingClassifier",
    "random_forest": "RandomForestClassifier",
}


def _payload(model: TrainedModel) -> tuple[str, bytes]:
    if isinstance(model, SklearnModel):
        import skops.io

        return SKOPS_NAME, skops.io.dumps(model.estimator)
    if model.backend == "rl":
        from forexd.models.rl_ppo import PAYLOAD_NAME, RlModel

        assert isinstance(model, RlModel)
        return PAYLOAD_NAME, model.payload()
    from forexd.models.torch_models import TorchModel, import_torch

    if not isinstance(model, TorchModel):
        raise ModelError(f"cannot save a {type(model).__name__}: unknown model backend")
    torch = import_torch()
    buf = io.BytesIO()
    state = {k: v.detach().cpu() for k, v in model.module.state_dict().items()}
    torch.save(state, buf)
    return TORCH_NAME, buf.getvalue()


def save_model(model: TrainedModel, path: Path) -> None:
    """Write ``model`` (with its ``metadata``) to ``path`` atomically.

    Raises:
        ModelError: the model's info or metadata is not JSON-serialisable.
        OSError: the file cannot be written (disk full, permissions).
    """
    name, payload = _payload(model)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "forexd_version": __version__,
        "backend": model.backend,
        "spec": model.spec.model_dump(mode="json"),
        "classes": [int(c) for c in model.classes],
        "n_features": model.n_features,
        "feature_names": model.feature_names,
        "info": model.info,
        "metadata": model.metadata,
        "payload": name,
    }
    try:
        meta_bytes = json.dumps(meta, indent=2, allow_nan=True).encode()
    except (TypeError, ValueError) as exc:
        raise ModelError(f"cannot save model to {path}: info/metadata is not JSON: {exc}") from None
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr(META_NAME, meta_bytes)
        zf.writestr(name, payload)
    write_atomic(Path(path), buf.getvalue())


def _read(path: Path) -> tuple[dict[str, Any], bytes]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ArtifactError(f"model artifact {path} does not exist; train a model first") from None
    except OSError as exc:
        raise ArtifactError(f"model artifact {path} cannot be read: {exc}") from None
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            meta = json.loads(zf.read(META_NAME))
            if not isinstance(meta, dict) or meta.get("format") != FORMAT:
                raise ArtifactError(f"{path} is not a forexd model artifact")
            payload = zf.read(str(meta.get("payload")))
    except ArtifactError:
        raise
    except (
        zipfile.BadZipFile,
        KeyError,
        ValueError,
        EOFError,
        OSError,
        zlib.error,
        NotImplementedError,
    ) as exc:
        # CRC and header damage raise BadZipFile, JSON damage ValueError, a missing member
        # KeyError; zlib.error and NotImplementedError come from a foreign compression method.
        raise ArtifactError(
            f"model artifact {path} is corrupt or truncated ({type(exc).__name__}: {exc}); "
            "delete it and retrain"
        ) from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            f"model artifact {path} has format version {meta.get('format_version')!r}; this "
            f"forexd reads version {FORMAT_VERSION}; retrain the model"
        )
    return meta, payload


def read_metadata(path: Path) -> dict[str, Any]:
    """The artifact's ``meta.json`` (spec, classes, info, metadata) without loading the model.

    Raises:
        ArtifactError: missing, unreadable, corrupt or of another format version.
    """
    meta, _ = _read(Path(path))
    return meta


def _load_sklearn(path: Path, payload: bytes, spec: ModelSpec) -> Any:
    import skops.io

    try:
        untrusted = skops.io.get_untrusted_types(data=payload)
    except Exception as exc:  # skops raises assorted errors on a malformed payload
        raise ArtifactError(f"model artifact {path}: unreadable skops payload: {exc}") from None
    unexpected = sorted(set(untrusted) - SKOPS_ALLOWED_TYPES)
    if unexpected:
        raise ArtifactError(
            f"model artifact {path} contains types forexd does not trust: {unexpected}; "
            "refusing to load it (was it written by forexd?)"
        )
    try:
        estimator = skops.io.loads(payload, trusted=list(untrusted))
    except Exception as exc:  # as above: any failure means the payload is unusable
        raise ArtifactError(f"model artifact {path}: cannot load the estimator: {exc}") from None
    expected = ESTIMATOR_TYPES.get(spec.kind)
    if type(estimator).__name__ != expected:
        raise ArtifactError(
            f"model artifact {path}: spec says {spec.kind} but the payload holds a "
            f"{type(estimator).__name__}"
        )
    return estimator


def _load_torch(path: Path, payload: bytes, meta: dict[str, Any], device: str) -> Any:
    from forexd.models.torch_models import build_module, import_torch

    torch = import_torch()
    spec = ModelSpec(**meta["spec"])
    module = build_module(spec, int(meta["n_features"]), len(meta["classes"]))
    try:
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
        module.load_state_dict(state)
    except Exception as exc:  # unpickling/shape errors: the file does not fit the spec
        raise ArtifactError(
            f"model artifact {path}: torch weights do not load into a {spec.kind}: {exc}"
        ) from None
    return module.to(device)


def load_model(path: Path, *, device: str = "cpu", n_jobs: int = 1) -> TrainedModel:
    """Load a model saved by :func:`save_model`.

    Args:
        path: the artifact file.
        device: torch models: where to put the weights (``cpu``, ``cuda``, ``auto``).
        n_jobs: threads the loaded random forest may use to predict.

    Raises:
        ArtifactError: missing, unreadable, truncated or corrupt file, another format
            version, untrusted types, or a payload that does not match its spec.
        TorchUnavailableError: a torch model without torch installed.
    """
    path = Path(path)
    meta, payload = _read(path)
    try:
        spec = ModelSpec(**meta["spec"])
        classes = np.asarray(meta["classes"], dtype=np.int64)
        n_features = int(meta["n_features"])
        names = meta.get("feature_names")
        info = dict(meta.get("info") or {})
        backend = meta["backend"]
    except (KeyError, TypeError, ValueError, ValidationError) as exc:
        raise ArtifactError(f"model artifact {path}: bad meta.json: {exc}") from None
    model: TrainedModel
    if backend == "sklearn" and not spec.uses_torch:
        estimator = _load_sklearn(path, payload, spec)
        model = SklearnModel(spec, estimator, classes, n_features, names, info)
        model.set_n_jobs(n_jobs)
        if not np.array_equal(np.asarray(estimator.classes_), classes):
            raise ArtifactError(f"model artifact {path}: classes in meta.json and model differ")
    elif backend == "rl" and spec.is_rl:
        from forexd.models.device import choose_device
        from forexd.models.rl_ppo import RlModel, load_rl

        resolved = choose_device(device)
        policy, mean, scale = load_rl(path, payload, spec, n_features, resolved)
        model = RlModel(spec, policy, mean, scale, resolved, n_features, names, info)
    elif backend == "torch" and spec.uses_torch and not spec.is_rl:
        from forexd.models.device import choose_device
        from forexd.models.torch_models import TorchModel

        resolved = choose_device(device)
        module = _load_torch(path, payload, meta, resolved)
        model = TorchModel(spec, module, resolved, classes, n_features, names, info)
    else:
        raise ArtifactError(f"model artifact {path}: backend {backend!r} does not fit {spec.kind}")
    model.metadata = dict(meta.get("metadata") or {})
    return model
