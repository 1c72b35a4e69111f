"""Paths the launch file resolves, kept here so they are testable without `launch`."""

import os

MODEL_FILE = 'autopilot.onnx'


def default_params_file(share_dir: str) -> str:
    return os.path.join(share_dir, 'config', 'autopilot.yaml')


def default_model_path(share_dir: str) -> str:
    """The shipped model, or '' (PD pilot only) while no model has earned shipping."""
    path = os.path.join(share_dir, 'resource', MODEL_FILE)
    return path if os.path.isfile(path) else ''


def rviz_config(share_dir: str) -> str:
    return os.path.join(share_dir, 'resource', 'autopilot.rviz')
