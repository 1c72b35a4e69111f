"""An ONNX Runtime policy: one .onnx file, checked against the model contract, then timed.

The node never unpickles anything; everything it needs to trust a model is in the file:
the graph's input/output signature and the metadata written at export (docs/design.md
"Models"). Every refusal says exactly which part of the contract failed.
"""

from collections import deque
from collections.abc import Sequence
import concurrent.futures
import hashlib
import math
import os
import queue
import stat
import threading
import time

import numpy as np

from autopilot_ros.conventions import SIGN_CONVENTION_VERSION
from autopilot_ros.features import FEATURE_NAMES, FEATURE_SPEC_HASH, NUM_FEATURES, WINDOW_LENGTH
from autopilot_ros.guards import ENVELOPE_KEY, Envelope, EnvelopeError

INPUT_NAME = 'input'
OUTPUT_NAME = 'output'
# At load, the first run (which allocates) may take this many inference budgets: the
# shipped model's first run takes about 2 ms, its later ones 0.05 ms.
FIRST_RUN_ALLOWANCE = 3
REQUIRED_METADATA = ('feature_spec_hash', 'window_length', 'rate_hz', 'sign_convention_version')


class ModelError(Exception):
    """A model file that breaks the contract; the message says what and where."""


def _dim_ok(dim: object, expected: int | None) -> bool:
    """A symbolic (named or None) dim is fine for the batch; fixed dims must match."""
    if expected is None:
        return dim is None or isinstance(dim, str) or dim == 1 or (isinstance(dim, int)
                                                                    and dim > 0)
    return dim == expected


def exercise_windows(seed: int = 0) -> list[tuple[str, np.ndarray]]:
    """Windows a model must survive at load: random rows, and every feature at +-5 alone."""
    rng = np.random.default_rng(seed)
    shape = (1, WINDOW_LENGTH, NUM_FEATURES)
    windows = [(f'random rows #{k}', rng.normal(0.0, 1.0, shape).astype(np.float32))
               for k in range(4)]
    for i, name in enumerate(FEATURE_NAMES):
        for value in (5.0, -5.0):
            window = np.zeros(shape, dtype=np.float32)
            window[0, :, i] = value
            windows.append((f'{name} = {value:+g}', window))
    return windows


def one_line(exc: BaseException) -> str:
    """An exception's text on one line (ONNX Runtime's span several), or at least its type."""
    return ' '.join(str(exc).split()) or type(exc).__name__


def check_model_path(path: str, allowed_dirs: Sequence[str]) -> str:
    """The real path of a model the node may load; ModelError naming the rule it breaks.

    Absolute, and (symbolic links resolved) inside one of `allowed_dirs`, in a folder and a
    file that not everyone may write: a model from a world-writable place (/tmp) could have
    been put there by anyone on the boat's network.
    """
    if not os.path.isabs(path):
        raise ModelError(f'{path}: give the model as an absolute path')
    real = os.path.realpath(path)
    folders = [os.path.realpath(os.path.expanduser(d)) for d in allowed_dirs if d]
    if not any(os.path.commonpath([real, folder]) == folder for folder in folders):
        raise ModelError(f'{path}: not inside an allowed model folder ({", ".join(folders)}); '
                         'copy it there or add its folder to allowed_model_dirs')
    for where in (os.path.dirname(real), real):
        if os.path.exists(where) and os.stat(where).st_mode & stat.S_IWOTH:
            raise ModelError(f'{path}: {where} is writable by anyone; refusing to load from it')
    return real


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


class _Worker:
    """One daemon thread running submitted calls in order: a model that never returns
    cannot hold up the process's exit, as a ThreadPoolExecutor's thread would."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._run, name='onnx-inference', daemon=True).start()

    def submit(self, fn, *args) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._jobs.put((future, fn, args))
        return future

    def stop(self) -> None:
        self._jobs.put(None)

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            future, fn, args = job
            try:
                future.set_result(fn(*args))
            except Exception as exc:  # noqa: BLE001 - handed to the caller
                future.set_exception(exc)


class ModelTimeout(ModelError):
    """The model gave no answer within its inference budget."""


class OnnxPolicy:
    """Loads, validates and warms up one model; then `infer(window)` -> rudder in [-1, 1].

    `max_bytes` refuses a larger file before reading it. With a `budget` (seconds), a model
    slower than that at load is refused, and at run time each inference runs on a worker
    thread the caller waits for at most `budget`: a late answer is a ModelTimeout (the
    pilot steers with the PID that tick), never a late tick. Without one (evaluation, training)
    inference runs in the caller's thread, so closed-loop runs stay deterministic.
    """

    def __init__(self, path: str, rate_hz: float | None = None, warmup_runs: int = 20, *,
                 budget: float | None = None, max_bytes: int | None = None,
                 expected_sha256: str = '') -> None:
        import onnxruntime as ort  # deferred: the pure modules import without it

        self.path = os.path.abspath(path)
        if not os.path.isfile(self.path):
            raise ModelError(f'{path}: no such model file')
        size = os.path.getsize(self.path)
        if max_bytes is not None and size > max_bytes:
            raise ModelError(f'{path}: {size / 1e6:.1f} MB, over the {max_bytes / 1e6:.1f} MB '
                             'limit for a model (not read)')
        self.budget = budget
        self._worker: _Worker | None = None
        self._pending: concurrent.futures.Future | None = None
        self.sha256 = file_sha256(self.path)
        if expected_sha256 and self.sha256 != expected_sha256.lower():
            raise ModelError(f'{path}: sha256 {self.sha256[:12]}... is not the pinned '
                             f'model_sha256 {expected_sha256[:12]}...')
        options = ort.SessionOptions()
        # One thread, no spinning: the Pi's other cores belong to the sensors and DDS, and a
        # 66k-parameter LSTM gains nothing from parallelism.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry('session.intra_op.allow_spinning', '0')
        options.log_severity_level = 4  # fatal only: the pilot reports a failed run itself
        try:
            self.session = ort.InferenceSession(
                self.path, sess_options=options, providers=['CPUExecutionProvider'])
        except Exception as exc:  # ORT raises several private types for unreadable files
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f'{path}: ONNX Runtime cannot load it: {first}') from None
        self._check_signature(path)
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self._check_metadata(path, rate_hz)
        self._times = deque(maxlen=1000)
        self.last_inference_time = math.nan
        self._warm_up(path, warmup_runs)

    def _check_signature(self, path: str) -> None:
        inputs = self.session.get_inputs()
        outputs = self.session.get_outputs()
        if len(inputs) != 1 or inputs[0].name != INPUT_NAME:
            names = [i.name for i in inputs]
            raise ModelError(f"{path}: expected one input named '{INPUT_NAME}', got {names}")
        if len(outputs) != 1 or outputs[0].name != OUTPUT_NAME:
            names = [o.name for o in outputs]
            raise ModelError(f"{path}: expected one output named '{OUTPUT_NAME}', got {names}")
        inp, out = inputs[0], outputs[0]
        if inp.type != 'tensor(float)':
            raise ModelError(f"{path}: input '{INPUT_NAME}' is {inp.type}, expected float32")
        if out.type != 'tensor(float)':
            raise ModelError(f"{path}: output '{OUTPUT_NAME}' is {out.type}, expected float32")
        shape = list(inp.shape)
        if len(shape) != 3 or not (_dim_ok(shape[0], None) and _dim_ok(shape[1], WINDOW_LENGTH)
                                   and _dim_ok(shape[2], NUM_FEATURES)):
            raise ModelError(f'{path}: input shape {shape}, expected [batch, {WINDOW_LENGTH}, '
                             f'{NUM_FEATURES}] (window length x features)')
        oshape = list(out.shape)
        if len(oshape) != 2 or not (_dim_ok(oshape[0], None) and _dim_ok(oshape[1], 1)):
            raise ModelError(f'{path}: output shape {oshape}, expected [batch, 1]')

    def _check_metadata(self, path: str, rate_hz: float | None) -> None:
        missing = [k for k in REQUIRED_METADATA if k not in self.metadata]
        if missing:
            raise ModelError(f'{path}: metadata lacks {missing}; export models with '
                             'autopilot-train so they carry the feature spec')
        md = self.metadata
        if md['feature_spec_hash'] != FEATURE_SPEC_HASH:
            raise ModelError(f"{path}: built for feature spec {md['feature_spec_hash']}, this "
                             f'node computes {FEATURE_SPEC_HASH}; retrain on this version')
        try:
            window = int(md['window_length'])
            model_rate = float(md['rate_hz'])
            signs = int(md['sign_convention_version'])
        except ValueError:
            raise ModelError(f'{path}: metadata window_length/rate_hz/sign_convention_version '
                             'are not numbers') from None
        if window != WINDOW_LENGTH:
            raise ModelError(f'{path}: window_length {window}, this node uses {WINDOW_LENGTH}')
        if signs != SIGN_CONVENTION_VERSION:
            raise ModelError(f'{path}: sign convention v{signs}, this node uses '
                             f'v{SIGN_CONVENTION_VERSION}')
        if rate_hz is not None and abs(model_rate - rate_hz) > 1e-6:
            raise ModelError(f'{path}: model made for {model_rate:g} Hz, node runs at '
                             f'{rate_hz:g} Hz; set rate_hz to {model_rate:g}')
        self.rate_hz = model_rate
        # The span of its training data, if export wrote one (models before it did: None).
        self.envelope = None
        if ENVELOPE_KEY in md:
            try:
                self.envelope = Envelope.from_json(md[ENVELOPE_KEY])
            except EnvelopeError as exc:
                raise ModelError(f'{path}: {exc}') from None

    def _warm_up(self, path: str, runs: int) -> None:
        """Run the model before any tick does: to warm it up, and to see it fail here.

        First runs allocate and pick kernels, so that happens at load. Then the model sees
        windows that exercise it (seeded random rows, and each feature at +-5 in the model's
        scaled units): one that raises or returns a malformed output on any of them is
        refused, since a tick could meet the same input. A non-finite output there is left
        to the pilot's per-tick guard; only a zero window must give a finite value.
        """
        zeros = np.zeros((1, WINDOW_LENGTH, NUM_FEATURES), dtype=np.float32)
        if self.budget is not None:
            self._check_budget(path, zeros)
        try:
            for _ in range(max(1, runs)):
                out = self.session.run(None, {INPUT_NAME: zeros})[0]
        except Exception as exc:
            raise ModelError(f'{path}: fails to run on a zero window: {exc}') from None
        if np.shape(out) != (1, 1):
            raise ModelError(f'{path}: returned shape {np.shape(out)} for one window, '
                             'expected (1, 1)')
        if not np.isfinite(out).all():
            raise ModelError(f'{path}: output is not finite on a zero window')
        for what, window in exercise_windows():
            try:
                out = self.session.run(None, {INPUT_NAME: window})[0]
            except Exception as exc:
                raise ModelError(f'{path}: fails to run on a window with {what}: '
                                 f'{one_line(exc)}') from None
            if np.shape(out) != (1, 1):
                raise ModelError(f'{path}: returned shape {np.shape(out)} for a window with '
                                 f'{what}, expected (1, 1)')
        self._times.clear()

    def _check_budget(self, path: str, zeros: np.ndarray) -> None:
        """Refuse a model slower than the budget, waiting at most a few budgets for it.

        The trial runs go to the inference thread: the first (which allocates) may take
        FIRST_RUN_ALLOWANCE budgets, the second must meet the budget. A model that takes
        seconds is refused after a fraction of one, however long it would have run.
        """
        self._worker = _Worker()
        for k, allowed in enumerate((FIRST_RUN_ALLOWANCE * self.budget, self.budget)):
            start = time.perf_counter()
            future = self._worker.submit(self.session.run, None, {INPUT_NAME: zeros})
            try:
                future.result(timeout=allowed)
            except concurrent.futures.TimeoutError:
                self.close()
                took = time.perf_counter() - start
                raise ModelError(f'{path}: no answer in {took * 1e3:.0f} ms at load (run '
                                 f'{k + 1}), over the {self.budget * 1e3:.0f} ms inference '
                                 'budget') from None
            except Exception as exc:
                self.close()
                raise ModelError(f'{path}: fails to run on a zero window: {exc}') from None

    def infer(self, window: np.ndarray) -> float:
        """Raw model output for one [1, L, F] window (NaN passes through to the safety layer).

        Raises ModelError for an output that is not one value; the pilot turns any
        exception into a fallback tick.
        """
        start = time.perf_counter()
        if self.budget is None:
            out = self.session.run(None, {INPUT_NAME: window})[0]
        else:
            out = self._run_within_budget(window)
        elapsed = time.perf_counter() - start
        self.last_inference_time = elapsed
        self._times.append(elapsed)
        if np.shape(out) != (1, 1):
            raise ModelError(f'output shape {np.shape(out)}, expected (1, 1)')
        return float(out[0, 0])

    def _run_within_budget(self, window: np.ndarray) -> np.ndarray:
        """Run on the worker thread; wait at most the budget (ORT releases the GIL)."""
        if self._pending is not None and not self._pending.done():
            raise ModelTimeout('still busy with an inference that missed its budget')
        if self._worker is None:
            self._worker = _Worker()
        # A copy: the window is a view of a buffer the next tick writes into.
        self._pending = self._worker.submit(
            self.session.run, None, {INPUT_NAME: window.copy()})
        try:
            return self._pending.result(timeout=self.budget)[0]
        except concurrent.futures.TimeoutError:
            raise ModelTimeout(f'no answer within the {self.budget * 1e3:.0f} ms budget'
                               ) from None

    def close(self) -> None:
        """Let the worker thread go (a late inference finishes on its own)."""
        if self._worker is not None:
            self._worker.stop()
            self._worker = None

    def latency_percentiles(self) -> tuple[float, float]:
        """(p50, p99) inference time in seconds over the last 1000 runs (NaN if none)."""
        if not self._times:
            return math.nan, math.nan
        arr = np.fromiter(self._times, dtype=np.float64)
        return float(np.percentile(arr, 50)), float(np.percentile(arr, 99))

    @property
    def identity(self) -> str:
        return f'{os.path.basename(self.path)} sha256:{self.sha256[:12]}'
