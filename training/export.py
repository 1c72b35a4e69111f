"""Export a trained policy to one self-contained ONNX file that the node will accept.

The file carries the metadata the node checks (feature-spec hash, window, rate, sign
convention) and is only written after ONNX Runtime reproduces PyTorch on real windows.
"""

import datetime
import json
import os
import tempfile
import warnings

import numpy as np
import torch

from autopilot_ros.conventions import SIGN_CONVENTION_VERSION
from autopilot_ros.features import FEATURE_NAMES, FEATURE_SPEC_HASH, WINDOW_LENGTH
from autopilot_ros.guards import ENVELOPE_KEY, Envelope
from autopilot_ros.policy import INPUT_NAME, OUTPUT_NAME, OnnxPolicy

OPSET = 17
PARITY_TOLERANCE = 1e-4


def model_metadata(rate_hz: float, data_summary: dict, version: str,
                   envelope: Envelope | None = None) -> dict[str, str]:
    extra = {ENVELOPE_KEY: envelope.to_json()} if envelope is not None else {}
    return {**extra,
        'feature_spec_hash': FEATURE_SPEC_HASH,
        'feature_names': ','.join(FEATURE_NAMES),
        'window_length': str(WINDOW_LENGTH),
        'rate_hz': f'{rate_hz:g}',
        'sign_convention_version': str(SIGN_CONVENTION_VERSION),
        'training_data': json.dumps(data_summary, sort_keys=True),
        'model_version': version,
        'export_time': datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds'),
    }


class ExportError(ValueError):
    """ONNX Runtime does not reproduce PyTorch: the model is not written."""


def export_onnx(model: torch.nn.Module, path: str, *, rate_hz: float,
                check_windows: np.ndarray, data_summary: dict | None = None,
                version: str = '1', envelope_rows: np.ndarray | None = None) -> float:
    """Write `path`; return the max |ONNX Runtime - PyTorch| over `check_windows`.

    `envelope_rows`: the feature rows the model was trained on; their span goes into the
    metadata, and the node hands the helm to the PID when its inputs leave it (guards.py).

    Raises ExportError (and writes nothing at `path`) if they differ by more than 1e-4.
    """
    import onnx

    model = model.eval()
    example = torch.zeros(1, WINDOW_LENGTH, check_windows.shape[-1])
    out_dir = os.path.dirname(os.path.abspath(path))
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        raw = os.path.join(tmp, 'raw.onnx')
        # The TorchScript exporter gives a dynamic batch and a single file for LSTMs. Its
        # warning about LSTMs and batch sizes concerns given initial states; ours start at
        # zero inside the graph, and the parity check below runs a batch of many windows.
        # The exporter's other warnings are about tracing (our graphs have no data-dependent
        # control flow) and its own deprecation (the dynamo exporter cannot do this yet).
        with warnings.catch_warnings():
            warnings.filterwarnings('ignore', message='Exporting a model to ONNX with a batch')
            warnings.filterwarnings('ignore', category=torch.jit.TracerWarning)
            warnings.filterwarnings('ignore', message='.*legacy TorchScript-based ONNX')
            warnings.filterwarnings('ignore', message='The feature will be removed')
            torch.onnx.export(model, (example,), raw, input_names=[INPUT_NAME],
                              output_names=[OUTPUT_NAME], opset_version=OPSET, dynamo=False,
                              dynamic_axes={INPUT_NAME: {0: 'batch'}, OUTPUT_NAME: {0: 'batch'}})
        proto = onnx.load(raw)
        envelope = Envelope.from_rows(envelope_rows) if envelope_rows is not None else None
        for key, value in model_metadata(rate_hz, data_summary or {}, version,
                                         envelope).items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.checker.check_model(proto)
        staged = os.path.join(tmp, 'model.onnx')
        onnx.save(proto, staged)
        policy = OnnxPolicy(staged, rate_hz=rate_hz)
        windows = check_windows.astype(np.float32)
        with torch.no_grad():
            expected = model(torch.from_numpy(windows)).numpy()
        got = policy.session.run(None, {INPUT_NAME: windows})[0]
        max_diff = float(np.max(np.abs(got - expected))) if len(windows) else 0.0
        if not max_diff <= PARITY_TOLERANCE:
            raise ExportError(f'ONNX Runtime differs from PyTorch by {max_diff:.2e} '
                             f'(> {PARITY_TOLERANCE:g}); not writing {path}')
        os.replace(staged, path)
    return max_diff
