"""The pilot's outputs as messages: one mapping for the node, the bag writer and the reader.

`fill_status_msg` and `fill_command_msg` only set attributes and `*_from_msg` only read
them, so they serve rclpy messages (the node) and rosbags messages (bags) alike, like the
sensor converters of samples.py. OUTPUTS declares the two output topics training reads
back from a recording, next to the sensor inputs of inputs.INPUTS.
"""

from collections.abc import Callable
from dataclasses import dataclass
import math
from typing import Any

from autopilot_ros.pilot import POLICY_STANDBY, PilotOutput
from autopilot_ros.samples import RudderSample, stamp_seconds

HAND_STEERING_REASON = 'hand steering'


@dataclass(frozen=True, slots=True)
class StatusSample:
    """What the pilot was doing (autopilot/status), to tell hand steering from pilot steering."""

    stamp: float
    mode: str
    engaged: bool
    target: float
    target_heading: float
    command: float
    policy: int


def status_from_msg(msg: Any) -> StatusSample:
    return StatusSample(
        stamp_seconds(msg.header), msg.mode, bool(msg.engaged), msg.target,
        msg.target_heading, msg.command, int(msg.policy),
    )


def command_from_msg(msg: Any) -> RudderSample:
    """The command has the rudder's sign and scale, so it fits a RudderSample."""
    return RudderSample(stamp_seconds(msg.header), msg.command)


def fill_status_msg(msg: Any, out: PilotOutput, *, model_path: str = '',
                    model_sha256: str = '') -> None:
    """An AutopilotStatus from one tick's output (the header is the caller's)."""
    msg.mode = out.mode
    msg.engaged = out.engaged
    msg.target = out.target
    msg.target_heading = out.target_heading
    msg.heading_error = out.heading_error
    msg.command = out.command
    msg.raw_command = out.raw_command
    msg.policy = out.policy
    msg.reason = out.reason
    msg.model_path = model_path
    msg.model_sha256 = model_sha256
    msg.inference_time = out.inference_time
    msg.window_fill = out.window_fill
    msg.stale_inputs = list(out.stale_inputs)


def fill_command_msg(msg: Any, out: PilotOutput) -> None:
    """A RudderCommand from one tick's output (the header is the caller's)."""
    msg.command = out.command
    msg.engaged = out.engaged
    msg.policy = out.policy


def output_of_status(sample: StatusSample) -> PilotOutput:
    """The tick output a recorded status stands for; what it does not say is NaN or empty."""
    return PilotOutput(
        stamp=sample.stamp, command=sample.command, raw_command=math.nan,
        engaged=sample.engaged, policy=sample.policy,
        reason='' if sample.engaged else HAND_STEERING_REASON, mode=sample.mode,
        target=sample.target, target_heading=sample.target_heading,
        heading_error=math.nan, window_fill=0, stale_inputs=[], inference_time=math.nan)


def hand_steering_status(stamp: float, mode: str, target: float, target_heading: float,
                         command: float) -> StatusSample:
    """The status a pilot in hand steering reports while a person steers `command`."""
    return StatusSample(stamp, mode, False, target, target_heading, command, POLICY_STANDBY)


@dataclass(frozen=True)
class OutputDef:
    """One output topic of the pilot that training reads back from recordings."""

    name: str  # relative topic name
    msg_type: str
    from_msg: Callable[[Any], Any]


OUTPUTS: tuple[OutputDef, ...] = (
    OutputDef('rudder_command', 'autopilot_ros/msg/RudderCommand', command_from_msg),
    OutputDef('autopilot/status', 'autopilot_ros/msg/AutopilotStatus', status_from_msg),
)
