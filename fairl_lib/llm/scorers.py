"""Toxicity scorers: callables ``texts -> {label: np.ndarray}`` with at least ``'toxic'`` = P(toxic).

Registered names (:func:`get_scorer`):

- ``bilstm``: the Jigsaw-trained BiLSTM of ``toxic-comment-classifier==0.3.0`` (6 labels), ported
  to PyTorch (no TensorFlow). Reproduces the package README to 1e-4. Offline ground truth.
- ``profanity``: ``alt-profanity-check==1.9.1`` (TF-IDF + calibrated linear SVM, ~200k
  human-labelled texts); a second, independent judge. Only ``'toxic'``.
- ``roberta``: ``s-nlp/roberta_toxicity_classifier`` (the paper's ground-truth reward, Sec. 5);
  needs the hub or the HF cache.
- ``detoxify``: Detoxify ``original`` (the paper's subtype labeller, Table 3) from a local
  checkpoint (``FAIRL_DETOXIFY_CKPT``); the ``detoxify`` package is not needed.

All scorers return the Jigsaw label names (``toxic, severe_toxic, obscene, threat, insult,
identity_hate``) where they have them. The RLHF reward is :func:`reward_from_scores`.
"""
from __future__ import annotations

import io
import pickle
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, ClassVar, Protocol

import h5py
import joblib
import numpy as np
import sklearn

from fairl_lib.llm.assets import fetch, profile_toml

LABELS: tuple[str, ...] = ("toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate")

# Ground-truth scorer of each profile when the profile file does not say (paper: roberta).
PROFILE_GROUND_TRUTH: dict[str, str] = {"smoke": "bilstm", "cpu": "bilstm", "paper": "roberta"}


class ScorerError(RuntimeError):
    """A scorer that cannot be built (unknown name, missing optional package, bad checkpoint)."""


class Scorer(Protocol):
    """``scorer(texts) -> {label: array of P(label) per text}``; ``labels`` lists the keys."""

    name: str
    labels: tuple[str, ...]

    def __call__(self, texts: Sequence[str]) -> dict[str, np.ndarray]: ...


def _as_list(texts: Iterable[str] | str) -> list[str]:
    """Texts as a list of ``str`` (a single string is one text; ``None`` becomes ``""``)."""
    if isinstance(texts, str):
        return [texts]
    return ["" if t is None else str(t) for t in texts]


# =========================================================================== BiLSTM (Keras port)

KERAS_FILTERS = '!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n'
MAXLEN = 100  # toxic_classifier/model.py: MAXLEN = 100, pad_sequences defaults (pre, pre, value 0)


def text_to_word_sequence(text: str, filters: str = KERAS_FILTERS, lower: bool = True,
                          split: str = " ") -> list[str]:
    """Keras' ``text_to_word_sequence``: lower-case, map each filter char to ``split``, split, drop empties.

    Note: only ``split`` separates words; other whitespace (``\\r``, non-breaking space) stays inside
    a word, exactly as in Keras.
    """
    if lower:
        text = text.lower()
    text = text.translate(str.maketrans({c: split for c in filters}))
    return [w for w in text.split(split) if w]


class _PickledKerasTokenizer:
    """Stand-in for ``keras.src.legacy.preprocessing.text.Tokenizer``: keeps the pickled state only."""

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


class _TokenizerUnpickler(pickle.Unpickler):
    """Unpickles the Keras Tokenizer without Keras; only a few harmless classes are allowed."""

    SAFE: ClassVar[set[tuple[str, str]]] = {("collections", "OrderedDict"), ("collections", "defaultdict"), ("builtins", "int"),
            ("builtins", "dict"), ("builtins", "list"), ("builtins", "str")}

    def find_class(self, module: str, name: str) -> Any:
        if name == "Tokenizer" and module.startswith("keras"):
            return _PickledKerasTokenizer
        if (module, name) in self.SAFE:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"tokenizer.pickle refers to {module}.{name}, which is not allowed")


@dataclass
class KerasTokenizer:
    """Keras ``Tokenizer.texts_to_sequences`` reimplemented (word level, no analyzer).

    Semantics (Keras legacy preprocessing): a word with index ``i`` is kept when
    ``not num_words or i < num_words``; a word with index ``>= num_words``, or not in the
    vocabulary, becomes ``oov_token``'s index when ``oov_token`` is set, else it is dropped.
    """

    word_index: dict[str, int]
    num_words: int | None
    oov_token: str | None = None
    filters: str = KERAS_FILTERS
    lower: bool = True
    split: str = " "

    @classmethod
    def from_pickle(cls, path: Path) -> KerasTokenizer:
        """Read ``tokenizer.pickle`` (a pickled Keras Tokenizer) with the restricted unpickler."""
        with open(path, "rb") as fh:
            tok = _TokenizerUnpickler(io.BytesIO(fh.read())).load()
        state = tok.__dict__
        if state.get("char_level") or state.get("analyzer") is not None:
            raise ScorerError("tokenizer.pickle uses char_level/analyzer, which this port does not implement")
        return cls(word_index=dict(state["word_index"]), num_words=state.get("num_words"),
                   oov_token=state.get("oov_token"), filters=state.get("filters", KERAS_FILTERS),
                   lower=state.get("lower", True), split=state.get("split", " "))

    def text_to_sequence(self, text: str) -> list[int]:
        """Word ids of one text (see the class docstring for the num_words / OOV rule)."""
        oov = self.word_index.get(self.oov_token) if self.oov_token is not None else None
        out: list[int] = []
        for w in text_to_word_sequence(text, self.filters, self.lower, self.split):
            i = self.word_index.get(w)
            if i is not None and not (self.num_words and i >= self.num_words):
                out.append(i)
            elif oov is not None:
                out.append(oov)
        return out

    def texts_to_sequences(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.text_to_sequence(t) for t in texts]


def pad_sequences_pre(seqs: Sequence[Sequence[int]], maxlen: int = MAXLEN) -> np.ndarray:
    """Keras ``pad_sequences(seqs, maxlen)`` defaults: keep the last ``maxlen`` ids, left-pad with 0."""
    out = np.zeros((len(seqs), maxlen), dtype=np.int64)
    for row, s in enumerate(seqs):
        s = list(s)[-maxlen:]
        if s:
            out[row, maxlen - len(s):] = s
    return out


def _bilstm_net(weights: Path):
    """The Keras model of toxic_classifier/model.py in torch, weights read from the .h5 with h5py.

    Embedding(20000, 50) -> Bidirectional(LSTM(50, return_sequences)) -> GlobalMaxPool1D ->
    Dense(50, relu) -> Dense(6, sigmoid). No masking (Keras ``mask_zero=False``): the padding
    zeros run through the LSTM, as in Keras. Keras LSTM kernels are (in, 4u) with gates i, f, c, o,
    which equals torch's i, f, g, o order: ``weight_ih = kernel.T``; Keras' single bias goes to
    ``bias_ih`` and ``bias_hh`` is zero.
    """
    import torch
    from torch import nn

    class BiLSTMNet(nn.Module):
        def __init__(self, vocab: int, dim: int, units: int, n_out: int):
            super().__init__()
            self.embedding = nn.Embedding(vocab, dim)
            self.lstm = nn.LSTM(dim, units, batch_first=True, bidirectional=True)
            self.dense = nn.Linear(2 * units, 50)
            self.out = nn.Linear(50, n_out)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            h, _ = self.lstm(self.embedding(ids))
            return torch.sigmoid(self.out(torch.relu(self.dense(h.max(dim=1).values))))

    with h5py.File(weights, "r") as f:
        g = f["layers"]
        emb = g["embedding/vars/0"][()]
        lstm = {d: [g[f"bidirectional/{d}_layer/cell/vars/{k}"][()] for k in range(3)]
                for d in ("forward", "backward")}
        dense = [g[f"dense/vars/{k}"][()] for k in range(2)]
        out = [g[f"dense_1/vars/{k}"][()] for k in range(2)]
    units = lstm["forward"][1].shape[0]
    net = BiLSTMNet(emb.shape[0], emb.shape[1], units, out[0].shape[1])
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    with torch.no_grad():
        net.embedding.weight.copy_(t(emb))
        for d, suffix in (("forward", ""), ("backward", "_reverse")):
            kernel, recurrent, bias = lstm[d]
            getattr(net.lstm, f"weight_ih_l0{suffix}").copy_(t(kernel.T))
            getattr(net.lstm, f"weight_hh_l0{suffix}").copy_(t(recurrent.T))
            getattr(net.lstm, f"bias_ih_l0{suffix}").copy_(t(bias))
            getattr(net.lstm, f"bias_hh_l0{suffix}").zero_()
        net.dense.weight.copy_(t(dense[0].T))
        net.dense.bias.copy_(t(dense[1]))
        net.out.weight.copy_(t(out[0].T))
        net.out.bias.copy_(t(out[1]))
    return net.eval()


class BiLSTMScorer:
    """Jigsaw BiLSTM of toxic-comment-classifier==0.3.0 (6 labels), in PyTorch.

    Preprocessing as the package's ``classify``: raw text (its ``utils.clean_text`` is *not*
    applied by the package) -> Keras tokenizer (num_words 20000, no OOV token) -> pre-pad /
    pre-truncate to 100 ids.
    """

    name = "bilstm"
    labels = LABELS

    def __init__(self, folder: Path | None = None, batch_size: int = 256):
        import torch

        folder = Path(folder) if folder is not None else fetch("toxic-bilstm")
        self.tokenizer = KerasTokenizer.from_pickle(folder / "tokenizer.pickle")
        self.net = _bilstm_net(folder / "model.weights.h5")
        self.batch_size = batch_size
        self._torch = torch

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """``(n, 100)`` int64 ids, exactly the Keras model's input."""
        return pad_sequences_pre(self.tokenizer.texts_to_sequences(_as_list(texts)), MAXLEN)

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """``(n, 6)`` float32 probabilities in :data:`LABELS` order, in batches."""
        ids = self.encode(texts)
        out = np.zeros((len(ids), len(LABELS)), dtype=np.float32)
        with self._torch.inference_mode():
            for s in range(0, len(ids), self.batch_size):
                batch = self._torch.from_numpy(ids[s:s + self.batch_size])
                out[s:s + self.batch_size] = self.net(batch).numpy()
        return out

    def __call__(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        p = self.probabilities(texts)
        return {lab: p[:, k] for k, lab in enumerate(LABELS)}


# =========================================================================== alt-profanity-check


class ProfanityScorer:
    """alt-profanity-check==1.9.1: ``model.predict_proba(vectorizer.transform(texts))[:, 1]``.

    The joblib files were pickled with scikit-learn 1.9.1 (the package pins it); another sklearn
    version makes sklearn warn (InconsistentVersionWarning) and is refused here unless
    ``allow_other_sklearn=True``.
    """

    name = "profanity"
    labels = ("toxic",)
    SKLEARN_VERSION = "1.9.1"

    def __init__(self, folder: Path | None = None, allow_other_sklearn: bool = False):


        if sklearn.__version__ != self.SKLEARN_VERSION and not allow_other_sklearn:
            raise ScorerError(f"alt-profanity-check's files need scikit-learn=={self.SKLEARN_VERSION}; "
                              f"found {sklearn.__version__}. Install that version (or pass allow_other_sklearn=True).")
        folder = Path(folder) if folder is not None else fetch("profanity-check")
        with warnings.catch_warnings():
            if allow_other_sklearn:
                warnings.simplefilter("ignore")
            else:
                warnings.simplefilter("error", getattr(sklearn.exceptions, "InconsistentVersionWarning", UserWarning))
            self.vectorizer = joblib.load(folder / "vectorizer.joblib")
            self.model = joblib.load(folder / "model.joblib")

    def __call__(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        texts = _as_list(texts)
        if not texts:
            return {"toxic": np.zeros(0, dtype=np.float64)}
        return {"toxic": self.model.predict_proba(self.vectorizer.transform(texts))[:, 1]}


# =========================================================================== paper scorers (hub / local)


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class RobertaScorer:
    """``s-nlp/roberta_toxicity_classifier`` (paper Sec. 5 ground truth): softmax P of the label
    named ``toxic`` (looked up in ``config.id2label``, case-insensitive). Needs the hub or HF cache."""

    name = "roberta"
    labels = ("toxic",)

    def __init__(self, folder: Path | None = None, batch_size: int = 32, max_length: int = 512):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        folder = Path(folder) if folder is not None else fetch("roberta-toxicity")
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModelForSequenceClassification.from_pretrained(folder).eval().to(_device())
        names = {int(k): str(v).lower() for k, v in self.model.config.id2label.items()}
        toxic = [k for k, v in names.items() if v == "toxic"]
        if len(toxic) != 1:
            raise ScorerError(f"No single 'toxic' label in {folder} (id2label={names}).")
        self.toxic_index = toxic[0]
        self.batch_size, self.max_length = batch_size, max_length

    def __call__(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        import torch

        texts = _as_list(texts)
        out = np.zeros(len(texts), dtype=np.float32)
        with torch.inference_mode():
            for s in range(0, len(texts), self.batch_size):
                enc = self.tokenizer(texts[s:s + self.batch_size], return_tensors="pt", padding=True,
                                     truncation=True, max_length=self.max_length).to(self.model.device)
                probs = torch.softmax(self.model(**enc).logits.float(), dim=-1)
                out[s:s + self.batch_size] = probs[:, self.toxic_index].cpu().numpy()
        return {"toxic": out}


# Detoxify's class names -> Jigsaw names (Detoxify renames toxic -> toxicity etc.).
_DETOXIFY_TO_JIGSAW = {"toxicity": "toxic", "severe_toxicity": "severe_toxic", "identity_attack": "identity_hate"}


class DetoxifyScorer:
    """Detoxify ``original`` (BERT, 6 Jigsaw labels; paper Table 3) from a local ``.ckpt``.

    Mirrors ``detoxify.Detoxify``: the checkpoint holds ``config`` (arch ``model_type`` /
    ``model_name`` / ``tokenizer_name``, dataset ``classes``) and a ``state_dict``; outputs are
    ``sigmoid(logits)``. The backbone's config + tokenizer come from ``FAIRL_DETOXIFY_HF_CONFIG`` or
    the hub (asset ``bert-base-uncased``). Labels are renamed to the Jigsaw names.
    """

    name = "detoxify"
    labels = LABELS

    def __init__(self, checkpoint: Path | None = None, hf_config: Path | None = None, batch_size: int = 32):
        import torch
        import transformers

        ckpt_path = Path(checkpoint) if checkpoint is not None else fetch("detoxify-original")
        if ckpt_path.is_dir():
            found = sorted(ckpt_path.glob("*.ckpt"))
            if not found:
                raise ScorerError(f"No .ckpt in {ckpt_path}; set FAIRL_DETOXIFY_CKPT to the checkpoint file.")
            ckpt_path = found[0]
        try:
            ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:  # Lightning checkpoints may pickle plain config objects
            ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        arch = ckpt["config"]["arch"]["args"]
        classes = list(ckpt["config"]["dataset"]["args"]["classes"])
        cfg_dir = str(hf_config) if hf_config is not None else str(fetch("bert-base-uncased"))
        model_cls = getattr(transformers, arch["model_name"])
        config = model_cls.config_class.from_pretrained(cfg_dir, num_labels=arch["num_classes"])
        self.model = model_cls(config)
        missing, unexpected = self.model.load_state_dict(ckpt["state_dict"], strict=False)
        unexpected = [k for k in unexpected if not k.endswith("position_ids")]  # an old buffer, not a weight
        if missing or unexpected:
            raise ScorerError(f"{ckpt_path} does not fit {arch['model_name']}: missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]}. Is it Detoxify's 'original' checkpoint?")
        self.model.eval().to(_device())
        self.tokenizer = getattr(transformers, arch["tokenizer_name"]).from_pretrained(cfg_dir)
        self.classes = [_DETOXIFY_TO_JIGSAW.get(c, c) for c in classes[: arch["num_classes"]]]
        self.batch_size = batch_size

    def __call__(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        import torch

        texts = _as_list(texts)
        out = np.zeros((len(texts), len(self.classes)), dtype=np.float32)
        with torch.inference_mode():
            for s in range(0, len(texts), self.batch_size):
                enc = self.tokenizer(texts[s:s + self.batch_size], return_tensors="pt", truncation=True,
                                     padding=True).to(self.model.device)
                out[s:s + self.batch_size] = torch.sigmoid(self.model(**enc).logits.float()).cpu().numpy()
        return {c: out[:, k] for k, c in enumerate(self.classes)}


# =========================================================================== registry + reward

SCORERS: dict[str, Callable[..., Scorer]] = {
    "bilstm": BiLSTMScorer,
    "profanity": ProfanityScorer,
    "roberta": RobertaScorer,
    "detoxify": DetoxifyScorer,
}


def get_scorer(name: str, **kwargs: Any) -> Scorer:
    """A scorer by name (``bilstm``, ``profanity``, ``roberta``, ``detoxify``).

    Without ``kwargs`` the instance is cached (one load per process). Unknown names list the
    valid ones; an asset that cannot be reached raises :class:`fairl_lib.llm.assets.AssetUnavailable`.
    """
    if name not in SCORERS:
        raise ScorerError(f"Unknown scorer {name!r}. Valid scorers: {', '.join(SCORERS)}.")
    if kwargs:
        return SCORERS[name](**kwargs)
    return _cached_scorer(name)


@cache
def _cached_scorer(name: str) -> Scorer:
    return SCORERS[name]()


def ground_truth_scorer_name(profile: str) -> str:
    """The profile's ground-truth scorer: ``[models].ground_truth`` of its TOML, else
    :data:`PROFILE_GROUND_TRUTH` (``bilstm`` for smoke/cpu, ``roberta`` for paper)."""
    name = profile_toml(profile).get("models", {}).get("ground_truth")
    if name:
        return str(name)
    if profile not in PROFILE_GROUND_TRUTH:
        raise ScorerError(f"Unknown profile {profile!r}. Valid profiles: {', '.join(PROFILE_GROUND_TRUTH)}.")
    return PROFILE_GROUND_TRUTH[profile]


REWARD_KINDS = ("one_minus_p", "logit")


def reward_from_scores(scores: dict[str, np.ndarray] | np.ndarray, kind: str = "one_minus_p",
                       eps: float = 1e-6) -> np.ndarray:
    """Ground-truth RLHF reward from P(toxic) (paper Sec. 5: the classifier "rewards non-toxic
    completions"; the paper does not give the formula).

    - ``"one_minus_p"`` (default): ``r = 1 - P(toxic)`` in [0, 1]; bounded, so one very toxic
      completion cannot dominate a PPO/RLOO batch.
    - ``"logit"``: ``r = -logit(P(toxic)) = log((1 - p) / p)``, ``p`` clipped to ``[eps, 1 - eps]``;
      unbounded, keeps resolution near 0 and 1 (closer to a classifier's raw logit margin).
    """
    p = np.asarray(scores["toxic"] if isinstance(scores, dict) else scores, dtype=np.float64)
    if kind == "one_minus_p":
        return 1.0 - p
    if kind == "logit":
        p = np.clip(p, eps, 1.0 - eps)
        return np.log1p(-p) - np.log(p)
    raise ValueError(f"Unknown reward kind {kind!r}. Valid kinds: {', '.join(REWARD_KINDS)}.")


def toxicity_reward(scorer: str | Scorer = "bilstm", kind: str = "one_minus_p") -> Callable[[Sequence[str]], np.ndarray]:
    """A ``texts -> rewards`` callable (for ``rlhf.py``): :func:`reward_from_scores` of ``scorer``."""
    sc = get_scorer(scorer) if isinstance(scorer, str) else scorer
    reward_from_scores({"toxic": np.zeros(1)}, kind)  # validate ``kind`` now, not at the first step

    def reward(texts: Sequence[str]) -> np.ndarray:
        return reward_from_scores(sc(_as_list(texts)), kind)

    reward.__name__ = f"toxicity_reward_{sc.name}_{kind}"
    return reward
